#include "arch/x86/cpu_boot_state.h"

#include <array>
#include <bit>

#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {

namespace {

// Tables are written as host uint64_t arrays: the host must be little-endian like the guest.
static_assert(std::endian::native == std::endian::little);
// Boot structures must not overlap each other.
static_assert(kGdtAddr + kGdtSize <= kIdtAddr, "GDT runs into the IDT");
static_assert(kIdtAddr + kIdtSize <= kBootParamsAddr, "IDT runs into boot_params");
static_assert(kPdptAddr == kPml4Addr + 0x1000 && kPdAddr == kPdptAddr + 0x1000);

constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t k1G = 1ull << 30;
constexpr unsigned kPageDirs = 4;  // 4 x 1 GiB = the low 4 GiB

// Segment types.
constexpr uint8_t kTypeCodeExecReadAccessed = 0xb;
constexpr uint8_t kTypeDataReadWriteAccessed = 0x3;
constexpr uint8_t kTypeTss64Busy = 0xb;  // with s = 0
constexpr uint8_t kTypeLdt = 0x2;

SegmentDesc flat_code() {
    SegmentDesc d;
    d.limit = 0xffffffff;
    d.selector = kBootCsSelector;
    d.type = kTypeCodeExecReadAccessed;
    d.present = true;
    d.s = true;
    d.l = true;  // 64-bit code: db must be 0
    d.g = true;
    return d;
}

SegmentDesc flat_data() {
    SegmentDesc d;
    d.limit = 0xffffffff;
    d.selector = kBootDsSelector;
    d.type = kTypeDataReadWriteAccessed;
    d.present = true;
    d.s = true;
    d.db = true;
    d.g = true;
    return d;
}

// VM entry in long mode requires TR to be a busy 64-bit TSS; nothing uses it
// before the kernel loads its own, so a minimal 104-byte TSS at 0 will do.
SegmentDesc boot_tss() {
    SegmentDesc d;
    d.limit = 0x67;
    d.selector = kBootTssSelector;
    d.type = kTypeTss64Busy;
    d.present = true;
    return d;
}

template <typename T>
Result<void> write_checked(const GuestMemory& mem, uint64_t gpa, const T& obj, const char* what) {
    if (!mem.write(gpa, obj.data(), obj.size() * sizeof(obj[0])))
        return failf("cannot write the boot {} at {:#x}: not guest RAM", what, gpa);
    return {};
}

}  // namespace

uint64_t encode_gdt_entry(const SegmentDesc& d) {
    // Descriptor limits are 20 bits; with g the unit is 4 KiB.
    uint64_t limit = d.g ? (d.limit >> 12) : d.limit;
    uint64_t raw = 0;
    raw |= limit & 0xffff;
    raw |= (d.base & 0xffffff) << 16;
    raw |= uint64_t{d.type & 0xfu} << 40;
    raw |= uint64_t{d.s} << 44;
    raw |= uint64_t{d.dpl & 3u} << 45;
    raw |= uint64_t{d.present} << 47;
    raw |= ((limit >> 16) & 0xf) << 48;
    raw |= uint64_t{d.avl} << 52;
    raw |= uint64_t{d.l} << 53;
    raw |= uint64_t{d.db} << 54;
    raw |= uint64_t{d.g} << 55;
    raw |= ((d.base >> 24) & 0xff) << 56;
    return raw;
}

SegmentDesc decode_gdt_entry(uint64_t raw) {
    SegmentDesc d;
    d.base = ((raw >> 16) & 0xffffff) | (((raw >> 56) & 0xff) << 24);
    uint32_t limit = static_cast<uint32_t>((raw & 0xffff) | (((raw >> 48) & 0xf) << 16));
    d.type = static_cast<uint8_t>((raw >> 40) & 0xf);
    d.s = (raw >> 44) & 1;
    d.dpl = static_cast<uint8_t>((raw >> 45) & 3);
    d.present = (raw >> 47) & 1;
    d.avl = (raw >> 52) & 1;
    d.l = (raw >> 53) & 1;
    d.db = (raw >> 54) & 1;
    d.g = (raw >> 55) & 1;
    d.limit = d.g ? ((limit << 12) | 0xfff) : limit;
    return d;
}

BootCpuState boot_cpu_state(uint64_t entry, uint64_t boot_params_addr) {
    BootCpuState s;
    s.cs = flat_code();
    s.ds = flat_data();
    s.es = s.ds;
    s.fs = s.ds;
    s.gs = s.ds;
    s.ss = s.ds;
    s.tr = boot_tss();
    s.ldt.type = kTypeLdt;
    s.ldt.unusable = true;
    s.gdt = {kGdtAddr, static_cast<uint16_t>(kGdtSize - 1)};
    s.idt = {kIdtAddr, static_cast<uint16_t>(kIdtSize - 1)};
    s.cr0 = kCr0Pe | kCr0Et | kCr0Ne | kCr0Pg;
    s.cr3 = kPml4Addr;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma;
    s.rip = entry;
    s.rsi = boot_params_addr;
    s.rsp = kBootStackTop;
    s.rflags = 0x2;  // bit 1 is reserved-as-one; IF clear as the protocol requires
    return s;
}

Result<void> write_gdt(const GuestMemory& mem) {
    std::array<uint64_t, kGdtEntries> gdt{};
    // Entries 0 and 1 stay null; the protocol fixes CS/DS at indexes 2 and 3.
    gdt[kBootCsSelector >> 3] = encode_gdt_entry(flat_code());
    gdt[kBootDsSelector >> 3] = encode_gdt_entry(flat_data());
    // A 64-bit TSS descriptor is 16 bytes: the high half holds base[63:32] (0).
    gdt[kBootTssSelector >> 3] = encode_gdt_entry(boot_tss());
    gdt[(kBootTssSelector >> 3) + 1] = 0;
    return write_checked(mem, kGdtAddr, gdt, "GDT");
}

Result<void> write_idt(const GuestMemory& mem) {
    // Interrupts are off and the kernel loads its own IDT before enabling
    // them; an exception before that is fatal either way (triple fault).
    std::array<uint64_t, kIdtSize / 8> idt{};
    return write_checked(mem, kIdtAddr, idt, "IDT");
}

Result<void> write_identity_page_tables(const GuestMemory& mem) {
    std::array<uint64_t, 512> pml4{};
    pml4[0] = kPdptAddr | kPtePresent | kPteWritable;
    KS_TRY(write_checked(mem, kPml4Addr, pml4, "PML4"));

    std::array<uint64_t, 512> pdpt{};
    for (unsigned i = 0; i < kPageDirs; ++i)
        pdpt[i] = (kPdAddr + i * 0x1000ull) | kPtePresent | kPteWritable;
    KS_TRY(write_checked(mem, kPdptAddr, pdpt, "PDPT"));

    for (unsigned i = 0; i < kPageDirs; ++i) {
        std::array<uint64_t, 512> pd{};
        for (unsigned j = 0; j < 512; ++j)
            pd[j] = (i * k1G + j * k2M) | kPtePresent | kPteWritable | kPteLarge;
        KS_TRY(write_checked(mem, kPdAddr + i * 0x1000ull, pd, "page directory"));
    }
    return {};
}

Result<BootCpuState> setup_boot_cpu(const GuestMemory& mem, uint64_t entry,
                                    uint64_t boot_params_addr) {
    KS_TRY(write_gdt(mem));
    KS_TRY(write_idt(mem));
    KS_TRY(write_identity_page_tables(mem));
    return boot_cpu_state(entry, boot_params_addr);
}

}  // namespace kvmsandbox::x86
