// The boot CPU state for the Linux 64-bit boot protocol: long mode with
// paging on, identity-mapped low 4 GiB, a flat GDT with __BOOT_CS (0x10) and
// __BOOT_DS (0x18), interrupts off, rsi = boot_params. This file writes the
// in-memory structures (GDT, IDT, page tables) and describes the register
// state as plain data; converting it to kvm_sregs/kvm_regs happens elsewhere
// so this stays testable without /dev/kvm.
#pragma once

#include <cstdint>

#include "base/guest_memory.h"
#include "base/result.h"

namespace kvmsandbox::x86 {

// GDT selectors the boot protocol expects.
inline constexpr uint16_t kBootCsSelector = 0x10;   // index 2
inline constexpr uint16_t kBootDsSelector = 0x18;   // index 3
inline constexpr uint16_t kBootTssSelector = 0x20;  // index 4 (16-byte descriptor: 4 and 5)
inline constexpr unsigned kGdtEntries = 6;
inline constexpr uint64_t kGdtSize = uint64_t{kGdtEntries} * 8;
inline constexpr uint64_t kIdtSize = 8;  // one zero slot; limit is what matters

// Control register / EFER bits used at entry.
inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Et = 1ull << 4;
inline constexpr uint64_t kCr0Ne = 1ull << 5;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;

// Page table entry bits.
inline constexpr uint64_t kPtePresent = 1ull << 0;
inline constexpr uint64_t kPteWritable = 1ull << 1;
inline constexpr uint64_t kPteLarge = 1ull << 7;  // 2 MiB page in a PD entry

// A segment register as the CPU caches it (the fields of kvm_segment).
// `limit` is byte-granular, i.e. already scaled by `g` (0xffffffff for a
// flat 4 GiB segment), which is what KVM expects.
struct SegmentDesc {
    uint64_t base = 0;
    uint32_t limit = 0;
    uint16_t selector = 0;
    uint8_t type = 0;  // 4-bit type field
    bool present = false;
    uint8_t dpl = 0;
    bool db = false;  // default operand size (32-bit) for code/data
    bool s = false;   // code/data (true) vs system (false)
    bool l = false;   // 64-bit code
    bool g = false;   // 4 KiB granularity
    bool avl = false;
    bool unusable = false;
    bool operator==(const SegmentDesc&) const = default;
};

struct DescriptorTable {
    uint64_t base = 0;
    uint16_t limit = 0;
    bool operator==(const DescriptorTable&) const = default;
};

struct BootCpuState {
    SegmentDesc cs, ds, es, fs, gs, ss, tr, ldt;
    DescriptorTable gdt, idt;
    uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
    uint64_t rip = 0, rsi = 0, rsp = 0, rflags = 0;
};

// The 8-byte GDT form of a code/data descriptor (or the low half of a system
// descriptor), and back. decode ignores the selector (returns 0) and expands
// the limit by granularity.
uint64_t encode_gdt_entry(const SegmentDesc& d);
SegmentDesc decode_gdt_entry(uint64_t raw);

// The register state for entering the kernel's 64-bit entry point `entry`
// (a bzImage's load address + 0x200, or a vmlinux's startup_64) with rsi =
// `boot_params_addr`. Pure: touches no memory.
BootCpuState boot_cpu_state(uint64_t entry, uint64_t boot_params_addr);

// Writes the GDT at kGdtAddr, an empty IDT at kIdtAddr and identity page
// tables (PML4 at kPml4Addr, PDPT at kPdptAddr, four PDs from kPdAddr)
// mapping [0, 4 GiB) with 2 MiB pages.
Result<void> write_gdt(const GuestMemory& mem);
Result<void> write_idt(const GuestMemory& mem);
Result<void> write_identity_page_tables(const GuestMemory& mem);

// All of the above: writes the structures, returns the register state.
Result<BootCpuState> setup_boot_cpu(const GuestMemory& mem, uint64_t entry,
                                    uint64_t boot_params_addr);

}  // namespace kvmsandbox::x86
