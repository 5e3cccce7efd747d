#include "arch/x86/e820.h"

#include <gtest/gtest.h>

#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

uint64_t total(const std::vector<E820Entry>& e, E820Type t) {
    uint64_t s = 0;
    for (const auto& x : e)
        if (x.type == t) s += x.size;
    return s;
}

void expect_sorted_disjoint(const std::vector<E820Entry>& e) {
    for (size_t i = 0; i < e.size(); ++i) {
        EXPECT_GT(e[i].size, 0u);
        if (i > 0) {
            EXPECT_LE(e[i - 1].addr + e[i - 1].size, e[i].addr) << "entry " << i;
        }
    }
}

class E820Sizes : public ::testing::TestWithParam<uint64_t> {};

TEST_P(E820Sizes, LayoutInvariants) {
    uint64_t ram = GetParam();
    auto e = build_e820(ram);
    expect_sorted_disjoint(e);
    ASSERT_LE(e.size(), kE820MaxEntries);
    // All RAM but the reserved EBDA..1 MiB window is usable.
    EXPECT_EQ(total(e, E820Type::kRam), ram - (kHighMemStart - kEbdaStart));
    EXPECT_EQ(total(e, E820Type::kReserved), kHighMemStart - kEbdaStart);
    // Nothing usable inside the MMIO hole.
    for (const auto& x : e) {
        bool in_hole = x.addr < kMmioHoleEnd && x.addr + x.size > kMmioHoleStart;
        EXPECT_FALSE(in_hole) << std::hex << x.addr;
    }
    // The KVM slots cover every e820 entry.
    auto slots = ram_ranges(ram);
    uint64_t slot_total = 0;
    for (const auto& s : slots) slot_total += s.size;
    EXPECT_EQ(slot_total, ram);
    for (const auto& x : e) {
        bool covered = false;
        for (const auto& s : slots) covered |= x.addr >= s.gpa && x.addr + x.size <= s.gpa + s.size;
        EXPECT_TRUE(covered) << std::hex << x.addr;
    }
}

INSTANTIATE_TEST_SUITE_P(E820, E820Sizes,
                         ::testing::Values(64 * kMiB, 512 * kMiB, 3 * kGiB, 5 * kGiB));

TEST(E820Test, Small) {
    auto e = build_e820(64 * kMiB);
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0], (E820Entry{0, kEbdaStart, E820Type::kRam}));
    EXPECT_EQ(e[1], (E820Entry{kEbdaStart, kHighMemStart - kEbdaStart, E820Type::kReserved}));
    EXPECT_EQ(e[2], (E820Entry{kHighMemStart, 63 * kMiB, E820Type::kRam}));
    EXPECT_EQ(ram_ranges(64 * kMiB), (std::vector<RamRange>{{0, 64 * kMiB}}));
}

TEST(E820Test, ExactlyThreeGiB) {
    auto e = build_e820(3 * kGiB);
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[2].addr + e[2].size, kMmioHoleStart);
    EXPECT_EQ(ram_ranges(3 * kGiB), (std::vector<RamRange>{{0, 3 * kGiB}}));
}

TEST(E820Test, AboveHoleGoesTo4G) {
    auto e = build_e820(5 * kGiB);
    ASSERT_EQ(e.size(), 4u);
    EXPECT_EQ(e[2], (E820Entry{kHighMemStart, 3 * kGiB - kHighMemStart, E820Type::kRam}));
    EXPECT_EQ(e[3], (E820Entry{4 * kGiB, 2 * kGiB, E820Type::kRam}));
    EXPECT_EQ(ram_ranges(5 * kGiB), (std::vector<RamRange>{{0, 3 * kGiB}, {4 * kGiB, 2 * kGiB}}));
}

}  // namespace
}  // namespace kvmsandbox::x86
