#include "arch/x86/boot_params.h"

#include <algorithm>
#include <array>

#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr uint64_t k4G = 0x100000000;

template <typename T>
void put_le(std::span<uint8_t> b, size_t off, T v) {
    for (size_t i = 0; i < sizeof(T); ++i)
        b[off + i] = static_cast<uint8_t>(uint64_t{v} >> (8 * i));
}

uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) & ~(a - 1);
}
uint64_t align_down(uint64_t v, uint64_t a) {
    return v & ~(a - 1);
}

}  // namespace

Result<uint64_t> choose_kernel_addr(const BzImage& k, uint64_t ram_below_hole) {
    uint64_t need = k.load_footprint();
    auto fits = [&](uint64_t addr) {
        // Never below 1 MiB: our boot structures and the ACPI tables are there.
        return addr >= kHighMemStart && addr <= ram_below_hole && need <= ram_below_hole - addr;
    };
    if (fits(k.pref_address)) return k.pref_address;
    if (!k.relocatable)
        return failf(
            "kernel is not relocatable and needs RAM at {:#x}..{:#x}, but guest RAM below 4 GiB "
            "ends at {:#x}",
            k.pref_address, k.pref_address + need, ram_below_hole);
    // A relocatable kernel loaded off kernel_alignment would move itself,
    // needing even more room; load it aligned instead.
    uint64_t addr = align_up(kKernelLoadAddr, k.kernel_alignment ? k.kernel_alignment : 1);
    if (!fits(addr))
        return failf(
            "guest RAM too small for the kernel: it needs {} MiB from {:#x}, RAM ends at "
            "{:#x}",
            (need + 0xfffff) >> 20, addr, ram_below_hole);
    return addr;
}

Result<uint64_t> place_initrd(const BzImage& k, uint64_t initrd_size, uint64_t ram_end_below_4g,
                              uint64_t kernel_end) {
    if (initrd_size == 0) return fail("initrd is empty");
    // initrd_addr_max is the highest byte the initrd may occupy (inclusive).
    uint64_t top = std::min<uint64_t>(uint64_t{k.initrd_addr_max} + 1, ram_end_below_4g);
    top = std::min(top, k4G);
    uint64_t bottom = align_up(kernel_end, kPageSize);
    if (initrd_size > top || align_down(top - initrd_size, kPageSize) < bottom)
        return failf(
            "initrd of {} bytes does not fit in guest RAM between the kernel end {:#x} and "
            "{:#x}; give the guest more memory",
            initrd_size, kernel_end, top);
    return align_down(top - initrd_size, kPageSize);
}

Result<void> load_kernel(const GuestMemory& mem, const BzImage& k, std::span<const uint8_t> file,
                         uint64_t addr) {
    auto code = k.kernel(file);
    if (code.size() != k.kernel_size)
        return fail("bzImage buffer is shorter than when it was parsed");
    // The kernel decompresses in place within init_size bytes: all of it must
    // be RAM or it faults in a way that is very hard to diagnose.
    if (!mem.span(addr, k.load_footprint()))
        return failf("kernel needs {:#x} bytes of RAM at {:#x}, beyond guest memory",
                     k.load_footprint(), addr);
    if (!mem.write(addr, code.data(), code.size()))
        return failf("cannot write the kernel to guest memory at {:#x}", addr);
    return {};
}

Result<void> write_boot_params(const GuestMemory& mem, const BzImage& k, const BootConfig& cfg) {
    // The 64-bit boot protocol wants a zeroed zero page with the setup header
    // copied in; starting from zeros also keeps the sentinel at 0x1ef clear,
    // so the kernel does not think we passed stale fields.
    std::array<uint8_t, kBootParamsSize> page{};
    std::span<uint8_t> p(page);
    if (k.setup_header.size() > kSetupHeaderMaxEnd - kSetupHeaderOffset)
        return fail("setup header too large");
    std::copy(k.setup_header.begin(), k.setup_header.end(), page.begin() + kSetupHeaderOffset);

    if (cfg.kernel_addr >= k4G)
        return failf("kernel load address {:#x} is above 4 GiB", cfg.kernel_addr);

    put_le<uint16_t>(p, bp::kVidMode, 0xffff);    // "normal" video mode: no mode switch
    put_le<uint8_t>(p, bp::kTypeOfLoader, 0xff);  // undefined loader id
    // LOADED_HIGH: kernel at >= 1 MiB. CAN_USE_HEAP with heap_end_ptr keeps
    // anything that looks at the setup heap happy; the 64-bit entry does not use it.
    put_le<uint8_t>(p, bp::kLoadflags, k.loadflags | kLoadedHigh | kCanUseHeap);
    put_le<uint16_t>(p, bp::kHeapEndPtr, 0xfe00);
    put_le<uint32_t>(p, bp::kCode32Start, static_cast<uint32_t>(cfg.kernel_addr));

    // Command line: the kernel copies at most cmdline_size bytes.
    if (cfg.cmdline.find('\0') != std::string::npos)
        return fail("kernel command line contains a NUL byte");
    if (cfg.cmdline.size() > k.cmdline_size)
        return failf("kernel command line too long: {} bytes, this kernel accepts at most {}",
                     cfg.cmdline.size(), k.cmdline_size);
    if (cfg.cmdline.size() + 1 > kCmdlineMax)
        return failf("kernel command line too long: {} bytes, at most {} supported",
                     cfg.cmdline.size(), kCmdlineMax - 1);
    if (!mem.write(kCmdlineAddr, cfg.cmdline.c_str(), cfg.cmdline.size() + 1))
        return failf("cannot write the kernel command line at {:#x}: not guest RAM", kCmdlineAddr);
    put_le<uint32_t>(p, bp::kCmdLinePtr, static_cast<uint32_t>(kCmdlineAddr));
    put_le<uint32_t>(p, bp::kExtCmdLinePtr, static_cast<uint32_t>(kCmdlineAddr >> 32));

    if (cfg.initrd_size > 0) {
        if (cfg.initrd_addr + cfg.initrd_size < cfg.initrd_addr ||
            !mem.span(cfg.initrd_addr, cfg.initrd_size))
            return failf("initrd at {:#x} ({} bytes) is not in guest RAM", cfg.initrd_addr,
                         cfg.initrd_size);
        if (cfg.initrd_addr + cfg.initrd_size > uint64_t{k.initrd_addr_max} + 1 &&
            !(k.xloadflags & kXlfCanBeLoadedAbove4G))
            return failf("initrd at {:#x} ends above this kernel's initrd_addr_max {:#x}",
                         cfg.initrd_addr, k.initrd_addr_max);
        put_le<uint32_t>(p, bp::kRamdiskImage, static_cast<uint32_t>(cfg.initrd_addr));
        put_le<uint32_t>(p, bp::kRamdiskSize, static_cast<uint32_t>(cfg.initrd_size));
        put_le<uint32_t>(p, bp::kExtRamdiskImage, static_cast<uint32_t>(cfg.initrd_addr >> 32));
        put_le<uint32_t>(p, bp::kExtRamdiskSize, static_cast<uint32_t>(cfg.initrd_size >> 32));
    }

    if (cfg.e820.size() > kE820MaxEntries)
        return failf("too many e820 entries: {} (at most {})", cfg.e820.size(), kE820MaxEntries);
    put_le<uint8_t>(p, bp::kE820Entries, static_cast<uint8_t>(cfg.e820.size()));
    for (size_t i = 0; i < cfg.e820.size(); ++i) {
        size_t off = bp::kE820Table + i * bp::kE820EntrySize;
        put_le<uint64_t>(p, off, cfg.e820[i].addr);
        put_le<uint64_t>(p, off + 8, cfg.e820[i].size);
        put_le<uint32_t>(p, off + 16, static_cast<uint32_t>(cfg.e820[i].type));
    }

    // Older kernels ignore the field and scan 0xe0000..0xfffff for the RSDP,
    // which is where we put it anyway.
    if (cfg.acpi_rsdp_addr && k.protocol >= kBootProtocolAcpiRsdp)
        put_le<uint64_t>(p, bp::kAcpiRsdpAddr, cfg.acpi_rsdp_addr);

    if (!mem.write(kBootParamsAddr, page.data(), page.size()))
        return failf("cannot write boot_params at {:#x}: not guest RAM", kBootParamsAddr);
    return {};
}

}  // namespace kvmsandbox::x86
