#include "arch/x86/boot_params.h"

#include <gtest/gtest.h>

#include <cstring>

#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

// Fake guest RAM: one heap buffer at gpa 0.
struct FakeRam {
    explicit FakeRam(size_t size) : buf(size, 0), mem({MemoryRegion{0, size, buf.data()}}) {}
    std::vector<uint8_t> buf;
    GuestMemory mem;
    uint8_t u8(size_t off) const { return buf.at(off); }
    uint16_t u16(size_t off) const { return static_cast<uint16_t>(u8(off) | u8(off + 1) << 8); }
    uint32_t u32(size_t off) const { return u16(off) | uint32_t{u16(off + 2)} << 16; }
    uint64_t u64(size_t off) const { return u32(off) | uint64_t{u32(off + 4)} << 32; }
};

// The parts of a parsed bzImage these functions use; the header bytes mimic
// a protocol 2.15 kernel.
BzImage fake_kernel() {
    BzImage k;
    k.setup_header.assign(0x26c - 0x1f1, 0);
    auto h = [&](size_t off) -> uint8_t& { return k.setup_header[off - 0x1f1]; };
    h(0x1fe) = 0x55;
    h(0x1ff) = 0xaa;
    h(0x200) = 0xeb;
    h(0x201) = 0x6a;
    std::memcpy(&h(0x202), "HdrS", 4);
    h(0x206) = 0x0f;
    h(0x207) = 0x02;
    h(0x211) = 0x01;
    k.protocol = 0x020f;
    k.setup_sects = 4;
    k.loadflags = 0x01;
    k.xloadflags = kXlfKernel64;
    k.kernel_offset = 5 * 512;
    k.kernel_size = 4096;
    k.pref_address = 0x1000000;
    k.init_size = 0x1000000;  // 16 MiB
    k.kernel_alignment = 0x200000;
    k.relocatable = true;
    k.initrd_addr_max = 0x7fffffff;
    k.cmdline_size = 2047;
    return k;
}

TEST(BootParamsTest, WritesZeroPage) {
    FakeRam ram(64 * kMiB);
    auto k = fake_kernel();
    BootConfig cfg;
    cfg.kernel_addr = 0x1000000;
    cfg.cmdline = "console=ttyS0 quiet";
    cfg.initrd_addr = 0x3000000;
    cfg.initrd_size = 0x123456;
    cfg.e820 = build_e820(64 * kMiB);
    cfg.acpi_rsdp_addr = kAcpiTablesAddr;
    auto r = write_boot_params(ram.mem, k, cfg);
    ASSERT_TRUE(r.has_value()) << r.error().message;

    const size_t z = kBootParamsAddr;
    EXPECT_EQ(ram.u16(z + bp::kBootFlag), 0xaa55);
    EXPECT_EQ(ram.u32(z + bp::kHeader), 0x53726448u);
    EXPECT_EQ(ram.u16(z + bp::kVersion), 0x020f);
    EXPECT_EQ(ram.u8(z + bp::kSentinel), 0);
    EXPECT_EQ(ram.u8(z + bp::kTypeOfLoader), 0xff);
    EXPECT_EQ(ram.u8(z + bp::kLoadflags), kLoadedHigh | kCanUseHeap);
    EXPECT_EQ(ram.u16(z + bp::kVidMode), 0xffff);
    EXPECT_EQ(ram.u32(z + bp::kCode32Start), 0x1000000u);
    EXPECT_EQ(ram.u32(z + bp::kCmdLinePtr), kCmdlineAddr);
    EXPECT_EQ(ram.u32(z + bp::kExtCmdLinePtr), 0u);
    EXPECT_STREQ(reinterpret_cast<const char*>(&ram.buf[kCmdlineAddr]), "console=ttyS0 quiet");
    EXPECT_EQ(ram.u32(z + bp::kRamdiskImage), 0x3000000u);
    EXPECT_EQ(ram.u32(z + bp::kRamdiskSize), 0x123456u);
    EXPECT_EQ(ram.u64(z + bp::kAcpiRsdpAddr), kAcpiTablesAddr);
    ASSERT_EQ(ram.u8(z + bp::kE820Entries), cfg.e820.size());
    for (size_t i = 0; i < cfg.e820.size(); ++i) {
        size_t off = z + bp::kE820Table + i * bp::kE820EntrySize;
        EXPECT_EQ(ram.u64(off), cfg.e820[i].addr);
        EXPECT_EQ(ram.u64(off + 8), cfg.e820[i].size);
        EXPECT_EQ(ram.u32(off + 16), static_cast<uint32_t>(cfg.e820[i].type));
    }
}

TEST(BootParamsTest, E820ForSeveralSizes) {
    for (uint64_t size : {64 * kMiB, 512 * kMiB, 3 * kGiB, 5 * kGiB}) {
        FakeRam ram(1 * kMiB);  // the zero page only needs low memory
        BootConfig cfg;
        cfg.kernel_addr = 0x1000000;
        cfg.e820 = build_e820(size);
        ASSERT_TRUE(write_boot_params(ram.mem, fake_kernel(), cfg).has_value());
        size_t n = ram.u8(kBootParamsAddr + bp::kE820Entries);
        EXPECT_EQ(n, size > kMmioHoleStart ? 4u : 3u);
        uint64_t usable = 0;
        for (size_t i = 0; i < n; ++i) {
            size_t off = kBootParamsAddr + bp::kE820Table + i * bp::kE820EntrySize;
            if (ram.u32(off + 16) == 1) usable += ram.u64(off + 8);
        }
        EXPECT_EQ(usable, size - (kHighMemStart - kEbdaStart)) << size;
    }
}

TEST(BootParamsTest, NoRsdpForOldProtocol) {
    FakeRam ram(1 * kMiB);
    auto k = fake_kernel();
    k.protocol = 0x020c;
    BootConfig cfg;
    cfg.kernel_addr = 0x100000;
    cfg.acpi_rsdp_addr = kAcpiTablesAddr;
    ASSERT_TRUE(write_boot_params(ram.mem, k, cfg).has_value());
    EXPECT_EQ(ram.u64(kBootParamsAddr + bp::kAcpiRsdpAddr), 0u);
}

TEST(BootParamsTest, RejectsTooLongCmdline) {
    FakeRam ram(1 * kMiB);
    BootConfig cfg;
    cfg.kernel_addr = 0x100000;
    cfg.cmdline = std::string(2048, 'x');  // kernel takes 2047
    auto r = write_boot_params(ram.mem, fake_kernel(), cfg);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("command line too long"), std::string::npos);

    cfg.cmdline.resize(2047);
    EXPECT_TRUE(write_boot_params(ram.mem, fake_kernel(), cfg).has_value());

    auto k = fake_kernel();
    k.cmdline_size = 1u << 20;  // the kernel would take more than our buffer
    cfg.cmdline = std::string(kCmdlineMax, 'x');
    EXPECT_FALSE(write_boot_params(ram.mem, k, cfg).has_value());
}

TEST(BootParamsTest, RejectsTooManyE820Entries) {
    FakeRam ram(1 * kMiB);
    BootConfig cfg;
    cfg.kernel_addr = 0x100000;
    for (unsigned i = 0; i < 129; ++i) cfg.e820.push_back({i * 0x1000ull, 0x1000, E820Type::kRam});
    EXPECT_FALSE(write_boot_params(ram.mem, fake_kernel(), cfg).has_value());
}

TEST(BootParamsTest, FailsWhenZeroPageNotInRam) {
    std::vector<uint8_t> buf(0x1000);
    GuestMemory mem({MemoryRegion{0, buf.size(), buf.data()}});  // ends before kBootParamsAddr
    BootConfig cfg;
    cfg.kernel_addr = 0x100000;
    EXPECT_FALSE(write_boot_params(mem, fake_kernel(), cfg).has_value());
}

TEST(BootParamsTest, ChooseKernelAddr) {
    auto k = fake_kernel();
    // Preferred address fits.
    EXPECT_EQ(*choose_kernel_addr(k, 64 * kMiB), 0x1000000u);
    // 24 MiB: 16 MiB + 16 MiB does not fit; relocatable -> 1 MiB aligned to 2 MiB.
    EXPECT_EQ(*choose_kernel_addr(k, 24 * kMiB), 0x200000u);
    // Too small for the kernel anywhere.
    EXPECT_FALSE(choose_kernel_addr(k, 8 * kMiB).has_value());
    // Not relocatable: only the preferred address will do.
    k.relocatable = false;
    EXPECT_FALSE(choose_kernel_addr(k, 24 * kMiB).has_value());
    EXPECT_EQ(*choose_kernel_addr(k, 32 * kMiB), 0x1000000u);
}

TEST(BootParamsTest, PlaceInitrdHighAndAligned) {
    auto k = fake_kernel();
    uint64_t kernel_end = 0x1000000 + k.init_size;
    auto a = place_initrd(k, 0x123456, 512 * kMiB, kernel_end);
    ASSERT_TRUE(a.has_value()) << a.error().message;
    EXPECT_EQ(*a % 4096, 0u);
    EXPECT_LE(*a + 0x123456, 512 * kMiB);
    EXPECT_GT(*a + 0x123456 + 4096, 512 * kMiB);  // as high as possible
    EXPECT_GE(*a, kernel_end);
}

TEST(BootParamsTest, PlaceInitrdUnderInitrdAddrMax) {
    auto k = fake_kernel();
    k.initrd_addr_max = 0x37ffffff;  // old kernels: 896 MiB
    uint64_t kernel_end = 0x1000000 + k.init_size;
    auto a = place_initrd(k, 10 * kMiB, 3 * kGiB, kernel_end);
    ASSERT_TRUE(a.has_value()) << a.error().message;
    EXPECT_LE(*a + 10 * kMiB, 0x38000000u);
    EXPECT_EQ(*a, 0x38000000u - 10 * kMiB);
}

TEST(BootParamsTest, PlaceInitrdDoesNotFit) {
    auto k = fake_kernel();
    uint64_t kernel_end = 0x1000000 + k.init_size;  // 32 MiB
    EXPECT_FALSE(place_initrd(k, 40 * kMiB, 64 * kMiB, kernel_end).has_value());
    EXPECT_TRUE(place_initrd(k, 32 * kMiB, 64 * kMiB, kernel_end).has_value());
    EXPECT_FALSE(place_initrd(k, 0, 64 * kMiB, kernel_end).has_value());
}

TEST(BootParamsTest, LoadKernel) {
    FakeRam ram(64 * kMiB);
    auto k = fake_kernel();
    std::vector<uint8_t> file(k.kernel_offset + k.kernel_size);
    for (size_t i = 0; i < file.size(); ++i) file[i] = static_cast<uint8_t>(i * 13);
    ASSERT_TRUE(load_kernel(ram.mem, k, file, 0x1000000).has_value());
    EXPECT_EQ(std::memcmp(&ram.buf[0x1000000], file.data() + k.kernel_offset, k.kernel_size), 0);
    // init_size beyond RAM.
    EXPECT_FALSE(load_kernel(ram.mem, k, file, 60 * kMiB).has_value());
    // File shorter than at parse time.
    file.resize(100);
    EXPECT_FALSE(load_kernel(ram.mem, k, file, 0x1000000).has_value());
}

}  // namespace
}  // namespace kvmsandbox::x86
