#include "arch/x86/cpuid.h"

#include <gtest/gtest.h>

#include <cstring>

using namespace kvmsandbox::x86;

namespace {

std::vector<CpuidEntry> sample() {
    std::vector<CpuidEntry> v;
    CpuidEntry l1;
    l1.function = 1;
    l1.ebx = 0xaabbccdd;
    l1.edx = 1u << 28;
    v.push_back(l1);
    for (uint32_t sub = 0; sub < 2; ++sub) {
        CpuidEntry b;
        b.function = 0xb;
        b.index = sub;
        b.flags = kCpuidFlagSignificantIndex;
        b.edx = 7;
        v.push_back(b);
    }
    return v;
}

const CpuidEntry* get(const std::vector<CpuidEntry>& v, uint32_t fn, uint32_t idx = 0) {
    for (const auto& e : v)
        if (e.function == fn && e.index == idx) return &e;
    return nullptr;
}

}  // namespace

TEST(Cpuid, Leaf1CarriesApicIdCountAndHypervisorBit) {
    auto out = cpuid_for_vcpu(sample(), 3, 4);
    const auto* l1 = get(out, 1);
    ASSERT_NE(l1, nullptr);
    EXPECT_EQ(l1->ebx >> 24, 3u);
    EXPECT_EQ((l1->ebx >> 16) & 0xff, 4u);
    EXPECT_EQ(l1->ebx & 0xffff, 0xccddu);
    EXPECT_TRUE(l1->ecx & (1u << 31));
    EXPECT_TRUE(l1->edx & (1u << 28));
}

TEST(Cpuid, SingleCpuClearsHtt) {
    auto out = cpuid_for_vcpu(sample(), 0, 1);
    EXPECT_FALSE(get(out, 1)->edx & (1u << 28));
}

TEST(Cpuid, ExtendedTopologyHasX2ApicIdInEverySubleaf) {
    auto out = cpuid_for_vcpu(sample(), 2, 4);
    EXPECT_EQ(get(out, 0xb, 0)->edx, 2u);
    EXPECT_EQ(get(out, 0xb, 1)->edx, 2u);
}

TEST(Cpuid, HypervisorLeavesAddedWhenMissing) {
    auto out = cpuid_for_vcpu(sample(), 0, 1);
    const auto* sig = get(out, kHypervisorBase);
    ASSERT_NE(sig, nullptr);
    char name[13] = {};
    std::memcpy(name, &sig->ebx, 4);
    std::memcpy(name + 4, &sig->ecx, 4);
    std::memcpy(name + 8, &sig->edx, 4);
    EXPECT_STREQ(name, "KVMKVMKVM");
    EXPECT_NE(get(out, kKvmFeatures), nullptr);
}

TEST(Cpuid, ExistingHypervisorLeavesKept) {
    auto in = sample();
    CpuidEntry sig;
    sig.function = kHypervisorBase;
    sig.eax = 0x40000010;
    in.push_back(sig);
    auto out = cpuid_for_vcpu(in, 0, 1);
    int count = 0;
    for (const auto& e : out) count += e.function == kHypervisorBase;
    EXPECT_EQ(count, 1);
    EXPECT_EQ(get(out, kHypervisorBase)->eax, 0x40000010u);
}
