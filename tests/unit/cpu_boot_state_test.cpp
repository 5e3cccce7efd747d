#include "arch/x86/cpu_boot_state.h"

#include <gtest/gtest.h>

#include <optional>

#include "arch/x86/bzimage.h"
#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {
namespace {

struct FakeRam {
    explicit FakeRam(size_t size) : buf(size, 0), mem({MemoryRegion{0, size, buf.data()}}) {}
    std::vector<uint8_t> buf;
    GuestMemory mem;
    uint64_t u64(uint64_t gpa) const { return *mem.read_obj<uint64_t>(gpa); }
};

// Walks the 4-level page tables like the MMU does for a 2 MiB or 4 KiB
// mapping; nullopt if not present.
std::optional<uint64_t> translate(const FakeRam& ram, uint64_t cr3, uint64_t va) {
    constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;
    uint64_t pml4e = ram.u64((cr3 & kAddrMask) + ((va >> 39) & 511) * 8);
    if (!(pml4e & kPtePresent)) return std::nullopt;
    uint64_t pdpte = ram.u64((pml4e & kAddrMask) + ((va >> 30) & 511) * 8);
    if (!(pdpte & kPtePresent) || (pdpte & kPteLarge)) return std::nullopt;
    uint64_t pde = ram.u64((pdpte & kAddrMask) + ((va >> 21) & 511) * 8);
    if (!(pde & kPtePresent)) return std::nullopt;
    if (!(pde & kPteWritable)) return std::nullopt;
    if (pde & kPteLarge) return (pde & 0x000fffffffe00000ull) | (va & 0x1fffff);
    return std::nullopt;  // we only build 2 MiB pages
}

TEST(CpuBootStateTest, IdentityMapsLow4G) {
    FakeRam ram(1 << 20);
    ASSERT_TRUE(write_identity_page_tables(ram.mem).has_value());
    for (uint64_t va : {0x0ull, 0x1234567ull, 0x7000ull, 0xe0000ull, 0x3fffffffull, 0x40000000ull,
                        0xe0000000ull /* 3.5 GiB */, 0xfee00000ull, 0xffffffffull}) {
        auto pa = translate(ram, kPml4Addr, va);
        ASSERT_TRUE(pa.has_value()) << std::hex << va;
        EXPECT_EQ(*pa, va) << std::hex << va;
    }
    EXPECT_FALSE(translate(ram, kPml4Addr, 0x100000000ull).has_value());
}

TEST(CpuBootStateTest, GdtEntriesDecodeBack) {
    FakeRam ram(1 << 20);
    ASSERT_TRUE(write_gdt(ram.mem).has_value());
    ASSERT_TRUE(write_idt(ram.mem).has_value());
    auto s = boot_cpu_state(0x1000000, kBootParamsAddr);

    EXPECT_EQ(ram.u64(kGdtAddr), 0u);
    EXPECT_EQ(ram.u64(kGdtAddr + 8), 0u);
    auto cs = decode_gdt_entry(ram.u64(kGdtAddr + kBootCsSelector));
    cs.selector = kBootCsSelector;
    EXPECT_EQ(cs, s.cs);
    auto ds = decode_gdt_entry(ram.u64(kGdtAddr + kBootDsSelector));
    ds.selector = kBootDsSelector;
    EXPECT_EQ(ds, s.ds);
    auto tr = decode_gdt_entry(ram.u64(kGdtAddr + kBootTssSelector));
    tr.selector = kBootTssSelector;
    EXPECT_EQ(tr, s.tr);
    EXPECT_EQ(ram.u64(kGdtAddr + kBootTssSelector + 8), 0u);  // base[63:32]

    // Well-known encodings: flat 64-bit code and flat data.
    EXPECT_EQ(ram.u64(kGdtAddr + kBootCsSelector), 0x00af9b000000ffffull);
    EXPECT_EQ(ram.u64(kGdtAddr + kBootDsSelector), 0x00cf93000000ffffull);

    EXPECT_EQ(s.gdt.base, kGdtAddr);
    EXPECT_EQ(s.gdt.limit, kGdtSize - 1);
    EXPECT_GE(uint64_t{s.gdt.limit} + 1, uint64_t{kBootTssSelector} + 16u);
    EXPECT_EQ(s.idt.base, kIdtAddr);
    EXPECT_EQ(ram.u64(kIdtAddr), 0u);
}

TEST(CpuBootStateTest, EncodeDecodeRoundTrip) {
    SegmentDesc d;
    d.base = 0x12345678;
    d.limit = 0xabcde;
    d.type = 0x9;
    d.present = true;
    d.dpl = 3;
    d.s = false;
    d.avl = true;
    d.db = true;
    EXPECT_EQ(decode_gdt_entry(encode_gdt_entry(d)), d);
    d.g = true;
    d.limit = 0x12345fff;
    EXPECT_EQ(decode_gdt_entry(encode_gdt_entry(d)), d);
}

TEST(CpuBootStateTest, RegisterState) {
    FakeRam ram(1 << 20);
    auto s = setup_boot_cpu(ram.mem, 0x1000000 + kEntry64Offset, kBootParamsAddr);
    ASSERT_TRUE(s.has_value()) << s.error().message;
    EXPECT_EQ(s->rip, 0x1000200u);
    EXPECT_EQ(s->rsi, kBootParamsAddr);
    EXPECT_EQ(s->rsp, kBootStackTop);
    EXPECT_EQ(s->rflags, 0x2u);
    EXPECT_EQ(s->cr3, kPml4Addr);
    EXPECT_TRUE(s->cr0 & kCr0Pe);
    EXPECT_TRUE(s->cr0 & kCr0Pg);
    EXPECT_TRUE(s->cr4 & kCr4Pae);
    EXPECT_EQ(s->efer & (kEferLme | kEferLma), kEferLme | kEferLma);
    EXPECT_EQ(s->cs.selector, 0x10);
    EXPECT_TRUE(s->cs.l);
    EXPECT_FALSE(s->cs.db);
    for (const auto* seg : {&s->ds, &s->es, &s->ss, &s->fs, &s->gs}) {
        EXPECT_EQ(seg->selector, 0x18);
        EXPECT_EQ(seg->limit, 0xffffffffu);
        EXPECT_TRUE(seg->present);
    }
    EXPECT_EQ(s->tr.type, 0xb);
    EXPECT_FALSE(s->tr.s);
    EXPECT_TRUE(s->ldt.unusable);
}

TEST(CpuBootStateTest, FailsWithoutLowRam) {
    std::vector<uint8_t> buf(0x100);
    GuestMemory mem({MemoryRegion{0, buf.size(), buf.data()}});
    EXPECT_FALSE(setup_boot_cpu(mem, 0x1000000, kBootParamsAddr).has_value());
}

}  // namespace
}  // namespace kvmsandbox::x86
