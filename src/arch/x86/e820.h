// The guest's physical memory map, as two views of one layout: the e820
// table the kernel reads from the zero page, and the RAM ranges the VMM
// registers as KVM memory slots. Both come from the constants in layout.h so
// they cannot disagree.
#pragma once

#include <cstdint>
#include <vector>

namespace kvmsandbox::x86 {

enum class E820Type : uint32_t {
    kRam = 1,
    kReserved = 2,
    kAcpi = 3,
    kNvs = 4,
};

struct E820Entry {
    uint64_t addr = 0;
    uint64_t size = 0;
    E820Type type = E820Type::kRam;
    bool operator==(const E820Entry&) const = default;
};

// A guest-physical RAM range backed by host memory (one KVM memory slot).
struct RamRange {
    uint64_t gpa = 0;
    uint64_t size = 0;
    bool operator==(const RamRange&) const = default;
};

// Boot protocol limit on e820 entries in the zero page.
inline constexpr unsigned kE820MaxEntries = 128;

// e820 map for `ram_size` bytes of guest RAM: usable RAM below the EBDA, the
// EBDA/BIOS area (where our ACPI tables live) reserved up to 1 MiB, RAM from
// 1 MiB to the start of the 32-bit MMIO hole, and whatever RAM is left above
// the hole from 4 GiB on. Entries are sorted and do not overlap.
std::vector<E820Entry> build_e820(uint64_t ram_size);

// The RAM backing the same layout: [0, min(ram_size, hole start)) and, if
// there is more, [4 GiB, 4 GiB + rest). The low range includes the reserved
// area below 1 MiB because boot structures and ACPI tables live there.
std::vector<RamRange> ram_ranges(uint64_t ram_size);

}  // namespace kvmsandbox::x86
