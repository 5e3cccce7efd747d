// Loading a bzImage for the 64-bit boot protocol: where the kernel and initrd
// go in guest RAM, and the zero page (struct boot_params) that tells the
// kernel about them, the command line, the memory map and the ACPI RSDP.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86/bzimage.h"
#include "arch/x86/e820.h"
#include "base/guest_memory.h"
#include "base/result.h"

namespace kvmsandbox::x86 {

inline constexpr uint64_t kBootParamsSize = 4096;

// Zero page offsets (Documentation/arch/x86/zero-page.rst and boot.rst).
namespace bp {
inline constexpr size_t kAcpiRsdpAddr = 0x070;     // u64, protocol 2.14+
inline constexpr size_t kExtRamdiskImage = 0x0c0;  // u32, high half of ramdisk_image
inline constexpr size_t kExtRamdiskSize = 0x0c4;   // u32
inline constexpr size_t kExtCmdLinePtr = 0x0c8;    // u32
inline constexpr size_t kE820Entries = 0x1e8;      // u8
inline constexpr size_t kSentinel = 0x1ef;         // u8, must stay 0
inline constexpr size_t kVidMode = 0x1fa;          // u16
inline constexpr size_t kBootFlag = 0x1fe;         // u16
inline constexpr size_t kHeader = 0x202;           // u32 "HdrS"
inline constexpr size_t kVersion = 0x206;          // u16
inline constexpr size_t kTypeOfLoader = 0x210;     // u8
inline constexpr size_t kLoadflags = 0x211;        // u8
inline constexpr size_t kCode32Start = 0x214;      // u32
inline constexpr size_t kRamdiskImage = 0x218;     // u32
inline constexpr size_t kRamdiskSize = 0x21c;      // u32
inline constexpr size_t kHeapEndPtr = 0x224;       // u16
inline constexpr size_t kCmdLinePtr = 0x228;       // u32
inline constexpr size_t kCmdlineSize = 0x238;      // u32
inline constexpr size_t kE820Table = 0x2d0;        // 128 x {u64 addr, u64 size, u32 type}
inline constexpr size_t kE820EntrySize = 20;
}  // namespace bp

// loadflags bits.
inline constexpr uint8_t kLoadedHigh = 1u << 0;
inline constexpr uint8_t kCanUseHeap = 1u << 7;

struct BootConfig {
    uint64_t kernel_addr = 0;  // where load_kernel() put the protected-mode kernel
    std::string cmdline;
    uint64_t initrd_addr = 0;  // 0 / 0: no initrd
    uint64_t initrd_size = 0;
    std::vector<E820Entry> e820;
    uint64_t acpi_rsdp_addr = 0;  // 0: let the kernel scan 0xe0000..0xfffff
};

// Where to load the protected-mode kernel, given RAM up to `ram_below_hole`
// (exclusive) below the MMIO hole: the kernel's preferred address if the
// kernel's whole footprint fits there, else (relocatable kernels only)
// kKernelLoadAddr rounded up to kernel_alignment.
Result<uint64_t> choose_kernel_addr(const BzImage& k, uint64_t ram_below_hole);

// Highest page-aligned address for an initrd of `initrd_size` bytes that
// ends below both initrd_addr_max and `ram_end_below_4g`, and starts at or
// above `kernel_end` (kernel load address + footprint).
Result<uint64_t> place_initrd(const BzImage& k, uint64_t initrd_size, uint64_t ram_end_below_4g,
                              uint64_t kernel_end);

// Copies the protected-mode kernel from `file` to `addr` and checks that the
// kernel's whole footprint (init_size) is guest RAM.
Result<void> load_kernel(const GuestMemory& mem, const BzImage& k, std::span<const uint8_t> file,
                         uint64_t addr);

// Builds the zero page at kBootParamsAddr and the command line at
// kCmdlineAddr.
Result<void> write_boot_params(const GuestMemory& mem, const BzImage& k, const BootConfig& cfg);

}  // namespace kvmsandbox::x86
