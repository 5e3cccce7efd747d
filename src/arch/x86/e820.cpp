#include "arch/x86/e820.h"

#include <algorithm>

#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {

std::vector<E820Entry> build_e820(uint64_t ram_size) {
    std::vector<E820Entry> e;
    // Conventional memory; tiny guests get only what they have.
    uint64_t low_end = std::min(ram_size, kEbdaStart);
    if (low_end > 0) e.push_back({0, low_end, E820Type::kRam});
    if (ram_size > kEbdaStart) {
        // EBDA, legacy video/ROM area and the ACPI tables up to 1 MiB: the
        // kernel must not hand it out as free memory.
        uint64_t res_end = std::min(ram_size, kHighMemStart);
        e.push_back({kEbdaStart, res_end - kEbdaStart, E820Type::kReserved});
    }
    uint64_t below_hole = std::min(ram_size, kMmioHoleStart);
    if (below_hole > kHighMemStart)
        e.push_back({kHighMemStart, below_hole - kHighMemStart, E820Type::kRam});
    if (ram_size > kMmioHoleStart)
        e.push_back({kMmioHoleEnd, ram_size - kMmioHoleStart, E820Type::kRam});
    return e;
}

std::vector<RamRange> ram_ranges(uint64_t ram_size) {
    std::vector<RamRange> r;
    uint64_t below_hole = std::min(ram_size, kMmioHoleStart);
    if (below_hole > 0) r.push_back({0, below_hole});
    if (ram_size > kMmioHoleStart) r.push_back({kMmioHoleEnd, ram_size - kMmioHoleStart});
    return r;
}

}  // namespace kvmsandbox::x86
