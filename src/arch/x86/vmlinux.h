// An uncompressed x86-64 kernel (the ELF vmlinux inside a bzImage's payload),
// entered directly at its 64-bit startup_64. Booting it skips the guest's
// decompressor: no xz/zstd decompression and no self-relocation in the guest,
// which is most of the work before the kernel proper starts (0.7 s of host CPU
// for Debian's 8 MiB xz kernel, several seconds under emulation). It runs at
// its link address, so the guest kernel gets no KASLR.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/guest_memory.h"
#include "base/result.h"

namespace kvmsandbox::x86 {

// What the headers ask for must be in the first bytes we read of the file.
inline constexpr size_t kVmlinuxHeadBytes = size_t{64} * 1024;

struct VmlinuxSegment {
    uint64_t file_offset = 0;
    uint64_t paddr = 0;
    uint64_t file_size = 0;
    uint64_t mem_size = 0;  // >= file_size; the rest is zeroed (bss)
};

struct Vmlinux {
    uint64_t entry = 0;  // physical address of startup_64
    std::vector<VmlinuxSegment> segments;
    uint64_t load_start = 0;  // lowest paddr of any segment
    uint64_t load_end = 0;    // highest paddr + mem_size (exclusive)
};

// Checks the ELF header and program headers in `head` (the first bytes of a
// file of `file_size` bytes): a 64-bit little-endian x86-64 executable whose
// loadable segments lie inside the file, do not wrap, and whose entry point is
// inside an executable one. Errors are one line ("not a vmlinux: ...").
Result<Vmlinux> parse_vmlinux(std::span<const uint8_t> head, uint64_t file_size);

// Reads each segment from `fd` straight into guest memory at its physical
// address and zeroes its tail. Every byte it touches must be guest RAM at or
// above `lowest_allowed` (below it are our boot structures and ACPI tables).
Result<void> load_vmlinux(const GuestMemory& mem, const Vmlinux& k, int fd,
                          uint64_t lowest_allowed);

}  // namespace kvmsandbox::x86
