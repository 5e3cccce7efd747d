#include "arch/x86/vmlinux.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/unique_fd.h"
#include "fake_boot_images.h"

namespace kvmsandbox::x86 {
namespace {

using testing::FakeSegment;
using testing::make_vmlinux;

constexpr uint64_t kRamSize = 8 << 20;

std::vector<uint8_t> bytes(size_t n, uint8_t seed) {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 13);
    return b;
}

// Two segments like a kernel's: text at 2 MiB, then data with a bss tail.
std::vector<uint8_t> two_segment_kernel() {
    return make_vmlinux(0x200000, {{0x200000, bytes(5000, 1), 5000, PF_R | PF_X},
                                   {0x400000, bytes(3000, 2), 9000, PF_R | PF_W}});
}

UniqueFd file_with(const std::vector<uint8_t>& data) {
    UniqueFd fd(::memfd_create("vmlinux-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd);
    EXPECT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
    return fd;
}

TEST(VmlinuxTest, ParsesSegmentsAndEntry) {
    auto f = two_segment_kernel();
    auto k = parse_vmlinux(f, f.size());
    ASSERT_TRUE(k.has_value()) << k.error().message;
    EXPECT_EQ(k->entry, 0x200000u);
    ASSERT_EQ(k->segments.size(), 2u);
    EXPECT_EQ(k->load_start, 0x200000u);
    EXPECT_EQ(k->load_end, 0x400000u + 9000);
    EXPECT_EQ(k->segments[1].file_size, 3000u);
    EXPECT_EQ(k->segments[1].mem_size, 9000u);
}

TEST(VmlinuxTest, LoadsIntoGuestMemoryAndZeroesBss) {
    auto f = two_segment_kernel();
    auto k = parse_vmlinux(f, f.size());
    ASSERT_TRUE(k.has_value());
    std::vector<uint8_t> ram(kRamSize, 0xee);
    GuestMemory mem({MemoryRegion{0, kRamSize, ram.data()}});
    auto fd = file_with(f);
    ASSERT_TRUE(load_vmlinux(mem, *k, fd.get(), 0x100000).has_value());
    auto text = bytes(5000, 1);
    auto data = bytes(3000, 2);
    EXPECT_TRUE(std::equal(text.begin(), text.end(), ram.begin() + 0x200000));
    EXPECT_TRUE(std::equal(data.begin(), data.end(), ram.begin() + 0x400000));
    for (size_t i = 0x400000 + 3000; i < 0x400000 + 9000; ++i) ASSERT_EQ(ram[i], 0) << i;
    EXPECT_EQ(ram[0x400000 + 9000], 0xee);  // nothing past the segment
}

TEST(VmlinuxTest, RefusesSegmentsOutsideRamOrOverBootData) {
    auto f = two_segment_kernel();
    auto k = parse_vmlinux(f, f.size());
    ASSERT_TRUE(k.has_value());
    auto fd = file_with(f);
    std::vector<uint8_t> small(0x300000);
    GuestMemory mem({MemoryRegion{0, small.size(), small.data()}});
    auto r = load_vmlinux(mem, *k, fd.get(), 0x100000);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("beyond guest memory"), std::string::npos);
    std::vector<uint8_t> ram(kRamSize);
    GuestMemory big({MemoryRegion{0, kRamSize, ram.data()}});
    r = load_vmlinux(big, *k, fd.get(), 0x300000);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("boot data"), std::string::npos);
}

TEST(VmlinuxTest, ATruncatedFileFailsToLoadInsteadOfLoadingGarbage) {
    auto f = two_segment_kernel();
    auto k = parse_vmlinux(f, f.size());
    ASSERT_TRUE(k.has_value());
    f.resize(f.size() - 4096);  // the file shrank after it was parsed
    auto fd = file_with(f);
    std::vector<uint8_t> ram(kRamSize);
    GuestMemory mem({MemoryRegion{0, kRamSize, ram.data()}});
    EXPECT_FALSE(load_vmlinux(mem, *k, fd.get(), 0x100000).has_value());
}

void expect_rejected(const std::vector<uint8_t>& f, const char* why, uint64_t size = 0) {
    auto k = parse_vmlinux(f, size ? size : f.size());
    ASSERT_FALSE(k.has_value()) << why;
    EXPECT_EQ(k.error().message.rfind("not a vmlinux", 0), 0u) << k.error().message;
}

TEST(VmlinuxTest, RejectsWhatIsNotAnX86_64Kernel) {
    auto good = two_segment_kernel();
    expect_rejected(std::vector<uint8_t>(good.begin(), good.begin() + 20), "short");
    auto f = good;
    f[0] = 0;
    expect_rejected(f, "magic");
    f = good;
    f[EI_CLASS] = ELFCLASS32;
    expect_rejected(f, "32-bit");
    f = good;
    f[offsetof(Elf64_Ehdr, e_machine)] = EM_386;
    expect_rejected(f, "machine");
    f = good;
    f[offsetof(Elf64_Ehdr, e_type)] = ET_DYN;
    expect_rejected(f, "type");
    f = good;
    f[offsetof(Elf64_Ehdr, e_phnum)] = 0;
    expect_rejected(f, "no program headers");
    f = good;
    f[offsetof(Elf64_Ehdr, e_phnum)] = 200;
    expect_rejected(f, "too many program headers");
    f = good;
    f[offsetof(Elf64_Ehdr, e_phentsize)] = 32;
    expect_rejected(f, "phentsize");
    // Segment data past the end of the file.
    expect_rejected(std::vector<uint8_t>(good.begin(), good.begin() + 4096), "cut", 4096);
}

TEST(VmlinuxTest, RejectsHostileSegments) {
    // Entry outside every executable segment.
    expect_rejected(make_vmlinux(0x400000, {{0x200000, bytes(100, 1), 100, PF_R | PF_X},
                                            {0x400000, bytes(100, 2), 100, PF_R | PF_W}}),
                    "entry in data");
    // filesz > memsz.
    expect_rejected(make_vmlinux(0x200000, {{0x200000, bytes(100, 1), 50}}), "filesz");
    // A segment that wraps the address space.
    expect_rejected(
        make_vmlinux(0xfffffffffffff000ull, {{0xfffffffffffff000ull, bytes(100, 1), 0x2000}}),
        "wrap");
    // Overlapping segments.
    expect_rejected(make_vmlinux(0x200000, {{0x200000, bytes(100, 1), 0x2000},
                                            {0x201000, bytes(100, 2), 0x100, PF_R}}),
                    "overlap");
}

}  // namespace
}  // namespace kvmsandbox::x86
