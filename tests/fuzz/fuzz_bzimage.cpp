// fuzz_bzimage: the input is a kernel image. It goes through what
// `kvmsandbox run` does with a --kernel file: parse_bzimage, then (when it
// parses) choose_kernel_addr, load_kernel, place_initrd and
// write_boot_params against 8 MiB of fake guest RAM at address 0, checking
// what each step promises. The command line's length is the image's last byte
// times 8, so it sometimes exceeds the header's cmdline_size. The same input
// also goes through parse_vmlinux and load_vmlinux (the unpacked kernel in the
// boot cache: a file of our own, but a corrupt one must fail cleanly).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch/x86/boot_params.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "arch/x86/vmlinux.h"
#include "base/guest_memory.h"
#include "fuzz_check.h"

namespace {

using namespace kvmsandbox;
using namespace kvmsandbox::x86;

constexpr uint64_t kRamSize = 8 << 20;
constexpr uint64_t kInitrdSize = 64 << 10;

struct Ram {
    std::vector<uint8_t> buf = std::vector<uint8_t>(kRamSize);
    GuestMemory mem{{MemoryRegion{0, kRamSize, buf.data()}}};
    uint8_t u8(uint64_t a) const { return buf[a]; }
    uint16_t u16(uint64_t a) const { return static_cast<uint16_t>(buf[a] | buf[a + 1] << 8); }
    uint32_t u32(uint64_t a) const { return uint32_t{u16(a)} | uint32_t{u16(a + 2)} << 16; }
};

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

void check_vmlinux(Ram& ram, std::span<const uint8_t> file) {
    const auto head = file.first(std::min(file.size(), kVmlinuxHeadBytes));
    auto k = parse_vmlinux(head, file.size());
    if (!k) {
        FUZZ_CHECK(starts_with(k.error().message, "not a vmlinux: "));
        return;
    }
    // What parse_vmlinux promises: segments inside the file, not wrapping,
    // not overlapping, and the span they cover.
    FUZZ_CHECK(!k->segments.empty() && k->load_start < k->load_end);
    for (const auto& s : k->segments) {
        FUZZ_CHECK(s.file_size <= s.mem_size);
        FUZZ_CHECK(s.file_offset <= file.size() && s.file_size <= file.size() - s.file_offset);
        FUZZ_CHECK(s.paddr >= k->load_start && s.paddr + s.mem_size <= k->load_end);
    }
    static int fd = ::memfd_create("fuzz-vmlinux", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(::ftruncate(fd, 0) == 0);
    FUZZ_CHECK(::pwrite(fd, file.data(), file.size(), 0) == static_cast<ssize_t>(file.size()));
    auto loaded = load_vmlinux(ram.mem, *k, fd, kHighMemStart);
    const bool fits = k->load_start >= kHighMemStart && k->load_end <= kRamSize;
    FUZZ_CHECK(loaded.has_value() == fits);
    if (!fits) return;
    for (const auto& s : k->segments) {
        FUZZ_CHECK(
            std::memcmp(ram.buf.data() + s.paddr, file.data() + s.file_offset, s.file_size) == 0);
        for (uint64_t i = s.file_size; i < s.mem_size; ++i) FUZZ_CHECK(ram.buf[s.paddr + i] == 0);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Ram* ram = new Ram;
    // Its own allocation, so ASan catches a read past the image.
    const std::vector<uint8_t> image(data, data + size);
    const std::span<const uint8_t> file(image);
    check_vmlinux(*ram, file);

    auto k = parse_bzimage(file);
    if (!k) {
        const std::string& m = k.error().message;
        FUZZ_CHECK(starts_with(m, "not a bzImage: ") || starts_with(m, "truncated bzImage: ") ||
                   starts_with(m, "unsupported bzImage: "));
        FUZZ_CHECK(m.find('\n') == std::string::npos);
        return 0;
    }

    // What parse_bzimage promises about an image it accepts.
    FUZZ_CHECK(size >= kMinBzImageSize);
    FUZZ_CHECK(k->protocol >= kMinBootProtocol && (k->xloadflags & kXlfKernel64));
    FUZZ_CHECK(k->setup_sects == (image[0x1f1] ? image[0x1f1] : 4));
    FUZZ_CHECK(k->kernel_offset == (uint64_t{k->setup_sects} + 1) * 512);
    FUZZ_CHECK(k->kernel_offset < size && k->kernel_offset + k->kernel_size == size);
    const size_t header_end = std::min<size_t>(0x202 + size_t{image[0x201]}, kSetupHeaderMaxEnd);
    FUZZ_CHECK(header_end >= kMinHeaderEnd);
    FUZZ_CHECK(k->setup_header.size() == header_end - kSetupHeaderOffset);
    FUZZ_CHECK(std::equal(k->setup_header.begin(), k->setup_header.end(),
                          image.begin() + kSetupHeaderOffset));
    FUZZ_CHECK(k->init_size != 0);
    if (k->relocatable)
        FUZZ_CHECK(k->kernel_alignment && !(k->kernel_alignment & (k->kernel_alignment - 1)));
    const auto code = k->kernel(file);
    FUZZ_CHECK(code.size() == k->kernel_size && code.data() == image.data() + k->kernel_offset);
    FUZZ_CHECK(k->kernel(file.first(size - 1)).empty());
    // The payload lies inside the protected-mode kernel, or there is none.
    const auto payload = k->payload(file);
    if (!payload.empty()) {
        FUZZ_CHECK(payload.data() >= code.data());
        FUZZ_CHECK(payload.data() + payload.size() <= code.data() + code.size());
    }
    // Parsing from the header bytes alone agrees with parsing the whole file.
    auto from_head = parse_bzimage_header(file.first(std::min<size_t>(size, 0x1000)), size);
    FUZZ_CHECK(from_head.has_value());
    FUZZ_CHECK(from_head->kernel_size == k->kernel_size &&
               from_head->setup_header == k->setup_header);
    const uint64_t footprint = k->load_footprint();
    FUZZ_CHECK(footprint >= k->kernel_size && footprint >= k->init_size);

    auto addr = choose_kernel_addr(*k, kRamSize);
    if (!addr) return 0;
    FUZZ_CHECK(*addr >= kHighMemStart && *addr <= kRamSize && footprint <= kRamSize - *addr);
    if (*addr != k->pref_address) {
        FUZZ_CHECK(k->relocatable);
        FUZZ_CHECK(*addr % k->kernel_alignment == 0);
    }

    // The whole footprint is RAM, so loading must succeed and copy the code.
    auto loaded = load_kernel(ram->mem, *k, file, *addr);
    FUZZ_CHECK(loaded.has_value());
    FUZZ_CHECK(std::memcmp(ram->buf.data() + *addr, code.data(), code.size()) == 0);
    // A buffer that shrank since parsing is refused.
    FUZZ_CHECK(!load_kernel(ram->mem, *k, file.first(size - 1), *addr).has_value());
    // A footprint running past the end of RAM is refused.
    FUZZ_CHECK(!load_kernel(ram->mem, *k, file, kRamSize - footprint + 1).has_value());

    const uint64_t kernel_end = *addr + footprint;
    FUZZ_CHECK(!place_initrd(*k, 0, kRamSize, kernel_end).has_value());
    auto initrd = place_initrd(*k, kInitrdSize, kRamSize, kernel_end);
    if (initrd) {
        FUZZ_CHECK(*initrd % 4096 == 0 && *initrd >= kernel_end);
        FUZZ_CHECK(*initrd + kInitrdSize <= kRamSize);
        FUZZ_CHECK(*initrd + kInitrdSize <= uint64_t{k->initrd_addr_max} + 1);
    }

    BootConfig cfg;
    cfg.kernel_addr = *addr;
    cfg.cmdline = "console=ttyS0 " + std::string(size_t{image.back()} * 8, 'x');
    if (initrd) {
        cfg.initrd_addr = *initrd;
        cfg.initrd_size = kInitrdSize;
    }
    cfg.e820 = build_e820(kRamSize);
    cfg.acpi_rsdp_addr = kAcpiTablesAddr;
    auto zp = write_boot_params(ram->mem, *k, cfg);
    FUZZ_CHECK(zp.has_value() == (cfg.cmdline.size() <= k->cmdline_size));
    if (!zp) return 0;

    // The zero page: the header as the image had it where we set nothing,
    // our fields where we did, and the command line it points to.
    const uint64_t z = kBootParamsAddr;
    FUZZ_CHECK(ram->u8(z + bp::kSentinel) == 0);
    FUZZ_CHECK(ram->u32(z + bp::kHeader) == 0x53726448);
    FUZZ_CHECK(ram->u16(z + bp::kVersion) == k->protocol);
    FUZZ_CHECK(ram->u8(z + bp::kTypeOfLoader) == 0xff);
    FUZZ_CHECK((ram->u8(z + bp::kLoadflags) & (kLoadedHigh | kCanUseHeap)) ==
               (kLoadedHigh | kCanUseHeap));
    FUZZ_CHECK(ram->u32(z + bp::kCode32Start) == *addr);
    FUZZ_CHECK(ram->u8(z + bp::kE820Entries) == cfg.e820.size());
    if (initrd) {
        FUZZ_CHECK(ram->u32(z + bp::kRamdiskImage) == *initrd);
        FUZZ_CHECK(ram->u32(z + bp::kRamdiskSize) == kInitrdSize);
    }
    const uint32_t cmdline = ram->u32(z + bp::kCmdLinePtr);
    FUZZ_CHECK(cmdline == kCmdlineAddr);
    FUZZ_CHECK(
        std::memcmp(ram->buf.data() + cmdline, cfg.cmdline.c_str(), cfg.cmdline.size() + 1) == 0);
    for (size_t off = kSetupHeaderOffset; off < header_end; ++off) {
        const bool ours = off == bp::kVidMode || off == bp::kVidMode + 1 ||
                          off == bp::kTypeOfLoader || off == bp::kLoadflags ||
                          (off >= bp::kCode32Start && off < bp::kCode32Start + 4) ||
                          (off >= bp::kRamdiskImage && off < bp::kRamdiskSize + 4) ||
                          (off >= bp::kHeapEndPtr && off < bp::kHeapEndPtr + 2) ||
                          (off >= bp::kCmdLinePtr && off < bp::kCmdLinePtr + 4);
        if (!ours) FUZZ_CHECK(ram->u8(z + off) == image[off]);
    }
    return 0;
}
