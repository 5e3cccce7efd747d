#include "arch/x86/acpi.h"

#include <cstring>

#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {

namespace {

// ---- byte-level helpers -------------------------------------------------

struct Bytes {
    std::vector<uint8_t> b;

    void u8(uint8_t v) { b.push_back(v); }
    void u16(uint16_t v) { le(v, 2); }
    void u32(uint32_t v) { le(v, 4); }
    void u64(uint64_t v) { le(v, 8); }
    void str(std::string_view s, size_t width) {
        // Fixed-width ASCII fields are space padded (OEM IDs) or exact (signatures).
        for (size_t i = 0; i < width; ++i) b.push_back(i < s.size() ? s[i] : ' ');
    }
    void zeros(size_t n) { b.insert(b.end(), n, 0); }
    void append(std::span<const uint8_t> s) { b.insert(b.end(), s.begin(), s.end()); }
    void le(uint64_t v, int n) {
        for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
    void patch32(size_t off, uint32_t v) {
        for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
    }
    size_t size() const { return b.size(); }
};

// Standard System Description Table header (36 bytes); length and checksum
// are filled in by finish().
constexpr size_t kLengthOff = 4;
constexpr size_t kChecksumOff = 9;

Bytes table_header(std::string_view sig, uint8_t revision) {
    Bytes t;
    t.str(sig, 4);
    t.u32(0);  // length
    t.u8(revision);
    t.u8(0);  // checksum
    t.str(kAcpiOemId, 6);
    t.str("KVMSBX", 8);  // OEM table id
    t.u32(1);            // OEM revision
    t.str("KSBX", 4);    // creator id
    t.u32(1);            // creator revision
    return t;
}

void finish(Bytes& t) {
    t.patch32(kLengthOff, static_cast<uint32_t>(t.size()));
    t.b[kChecksumOff] = 0;
    t.b[kChecksumOff] = static_cast<uint8_t>(-acpi_checksum(t.b));
}

// Generic Address Structure for a system I/O port block.
void gas_io(Bytes& t, uint16_t port, uint8_t len_bytes, uint8_t access_size) {
    t.u8(port ? 1 : 0);  // address space: system I/O
    t.u8(port ? static_cast<uint8_t>(len_bytes * 8) : 0);
    t.u8(0);  // bit offset
    t.u8(port ? access_size : 0);
    t.u64(port);
}
constexpr uint8_t kAccessWord = 2;

// ---- placement in guest memory ------------------------------------------

class Placer {
  public:
    Placer(const GuestMemory& mem) : mem_(mem), next_(kAcpiTablesAddr) {}

    // Reserves `size` bytes aligned to `align` and returns their address.
    Result<uint64_t> reserve(size_t size, uint64_t align, std::string_view what) {
        uint64_t addr = (next_ + align - 1) & ~(align - 1);
        if (addr > kAcpiTablesEnd || size > kAcpiTablesEnd - addr)
            return failf("ACPI tables do not fit below {:#x} (at the {})", kAcpiTablesEnd, what);
        next_ = addr + size;
        return addr;
    }
    Result<void> write(uint64_t addr, const Bytes& t, std::string_view what) {
        if (!mem_.write(addr, t.b.data(), t.size()))
            return failf("cannot write ACPI {} at {:#x}: not guest RAM", what, addr);
        return {};
    }
    // reserve + write.
    Result<uint64_t> put(const Bytes& t, uint64_t align, std::string_view what) {
        auto addr = reserve(t.size(), align, what);
        if (!addr) return addr;
        KS_TRY(write(*addr, t, what));
        return addr;
    }

  private:
    const GuestMemory& mem_;
    uint64_t next_;
};

// ---- tables -------------------------------------------------------------

Bytes build_dsdt() {
    Bytes t = table_header("DSDT", 2);  // revision 2: 64-bit AML integers
    // \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved. The kernel writes
    // SLP_TYPa | SLP_EN to PM1a_CNT to power off; devices/acpi_pm acts on it.
    const uint64_t s5[] = {kSlpTypS5, kSlpTypS5, 0, 0};
    t.append(aml::name_package("_S5_", s5));
    t.append(aml::pci_root_bridge(kPciMmioStart, kPciMmioEnd));
    finish(t);
    return t;
}

Bytes build_facs() {
    // Mandatory without HW_REDUCED_ACPI (waking vector, global lock). No checksum.
    Bytes t;
    t.str("FACS", 4);
    t.u32(64);
    t.u32(0);  // hardware signature
    t.u32(0);  // firmware waking vector
    t.u32(0);  // global lock
    t.u32(0);  // flags
    t.u64(0);  // X firmware waking vector
    t.u8(2);   // version
    t.zeros(3);
    t.u32(0);  // OSPM flags
    t.zeros(24);
    return t;
}

Bytes build_madt(unsigned num_cpus) {
    Bytes t = table_header("APIC", 5);
    t.u32(static_cast<uint32_t>(kLapicAddr));
    t.u32(1);  // PCAT_COMPAT: legacy 8259s exist; the kernel masks them
    for (unsigned i = 0; i < num_cpus; ++i) {
        t.u8(0);  // Processor Local APIC
        t.u8(8);
        t.u8(static_cast<uint8_t>(i));  // ACPI processor UID
        t.u8(static_cast<uint8_t>(i));  // APIC id (KVM uses the vCPU index)
        t.u32(1);                       // enabled
    }
    t.u8(1);  // I/O APIC
    t.u8(12);
    t.u8(static_cast<uint8_t>(num_cpus));  // id: the first one no CPU uses
    t.u8(0);
    t.u32(static_cast<uint32_t>(kIoapicAddr));
    t.u32(0);  // GSI base
    // Interrupt source overrides. MPS INTI flags: polarity bits 0-1
    // (1 = active high), trigger bits 2-3 (1 = edge, 3 = level).
    auto iso = [&](uint8_t irq, uint32_t gsi, uint16_t flags) {
        t.u8(2);
        t.u8(10);
        t.u8(0);  // bus: ISA
        t.u8(irq);
        t.u32(gsi);
        t.u16(flags);
    };
    iso(0, 2, 0x5);              // PIT: IRQ0 is wired to IOAPIC pin 2 on PCs (and in KVM)
    iso(kSciIrq, kSciIrq, 0xd);  // SCI: level, active high as our PM device drives it
    t.u8(4);                     // Local APIC NMI
    t.u8(6);
    t.u8(0xff);  // all processors
    t.u16(0x5);  // edge, active high
    t.u8(1);     // LINT1
    finish(t);
    return t;
}

Bytes build_fadt(uint64_t dsdt, uint64_t facs) {
    Bytes t = table_header("FACP", 6);
    t.u32(static_cast<uint32_t>(facs));  // FIRMWARE_CTRL (X_FIRMWARE_CTRL left 0: below 4 GiB)
    t.u32(static_cast<uint32_t>(dsdt));  // DSDT
    t.u8(0);                             // reserved (was INT_MODEL)
    t.u8(0);                             // preferred PM profile: unspecified
    t.u16(kSciIrq);                      // SCI_INT
    t.u32(0);                            // SMI_CMD = 0: no SMM handshake, ACPI mode is always on
    t.u8(0);                             // ACPI_ENABLE
    t.u8(0);                             // ACPI_DISABLE
    t.u8(0);                             // S4BIOS_REQ
    t.u8(0);                             // PSTATE_CNT
    t.u32(kPm1aEvtPort);                 // PM1a_EVT_BLK
    t.u32(0);                            // PM1b_EVT_BLK
    t.u32(kPm1aCntPort);                 // PM1a_CNT_BLK
    t.u32(0);                            // PM1b_CNT_BLK
    t.u32(0);                            // PM2_CNT_BLK
    t.u32(0);                            // PM_TMR_BLK: no PM timer
    t.u32(0);                            // GPE0_BLK
    t.u32(0);                            // GPE1_BLK
    t.u8(static_cast<uint8_t>(kPm1aEvtLen));  // PM1_EVT_LEN
    t.u8(static_cast<uint8_t>(kPm1aCntLen));  // PM1_CNT_LEN
    t.u8(0);                                  // PM2_CNT_LEN
    t.u8(0);                                  // PM_TMR_LEN
    t.u8(0);                                  // GPE0_BLK_LEN
    t.u8(0);                                  // GPE1_BLK_LEN
    t.u8(0);                                  // GPE1_BASE
    t.u8(0);                                  // CST_CNT
    // C2/C3 latencies above 100/1000 us tell the OS those states do not exist.
    t.u16(101);   // P_LVL2_LAT
    t.u16(1001);  // P_LVL3_LAT
    t.u16(0);     // FLUSH_SIZE
    t.u16(0);     // FLUSH_STRIDE
    t.u8(0);      // DUTY_OFFSET
    t.u8(0);      // DUTY_WIDTH
    t.u8(0);      // DAY_ALRM
    t.u8(0);      // MON_ALRM
    t.u8(0);      // CENTURY
    // IAPC_BOOT_ARCH: bit1 8042 present (so the kernel probes our i8042
    // without PNP entries), bit2 VGA not present.
    t.u16((1u << 1) | (1u << 2));
    t.u8(0);  // reserved
    // Flags: WBINVD (bit0), PROC_C1 (bit2), SLP_BUTTON (bit5: no fixed sleep
    // button). Not HW_REDUCED, no RESET_REG_SUP, no TMR_VAL_EXT.
    t.u32((1u << 0) | (1u << 2) | (1u << 5));
    gas_io(t, 0, 0, 0);  // RESET_REG
    t.u8(0);             // RESET_VALUE
    t.u16(0);            // ARM_BOOT_ARCH
    t.u8(5);             // FADT minor version (ACPI 6.5)
    t.u64(0);            // X_FIRMWARE_CTRL
    t.u64(dsdt);         // X_DSDT (same as DSDT; OSes prefer this one)
    gas_io(t, kPm1aEvtPort, kPm1aEvtLen, kAccessWord);  // X_PM1a_EVT_BLK
    gas_io(t, 0, 0, 0);                                 // X_PM1b_EVT_BLK
    gas_io(t, kPm1aCntPort, kPm1aCntLen, kAccessWord);  // X_PM1a_CNT_BLK
    gas_io(t, 0, 0, 0);                                 // X_PM1b_CNT_BLK
    gas_io(t, 0, 0, 0);                                 // X_PM2_CNT_BLK
    gas_io(t, 0, 0, 0);                                 // X_PM_TMR_BLK
    gas_io(t, 0, 0, 0);                                 // X_GPE0_BLK
    gas_io(t, 0, 0, 0);                                 // X_GPE1_BLK
    gas_io(t, 0, 0, 0);                                 // SLEEP_CONTROL_REG
    gas_io(t, 0, 0, 0);                                 // SLEEP_STATUS_REG
    t.u64(0);                                           // hypervisor vendor identity
    finish(t);
    return t;
}

Bytes build_xsdt(std::span<const uint64_t> tables) {
    Bytes t = table_header("XSDT", 1);
    for (uint64_t a : tables) t.u64(a);
    finish(t);
    return t;
}

Bytes build_rsdt(std::span<const uint64_t> tables) {
    Bytes t = table_header("RSDT", 1);
    for (uint64_t a : tables) t.u32(static_cast<uint32_t>(a));
    finish(t);
    return t;
}

constexpr size_t kRsdpSize = 36;

Bytes build_rsdp(uint64_t rsdt, uint64_t xsdt) {
    Bytes t;
    t.str("RSD PTR ", 8);
    t.u8(0);  // checksum over the first 20 bytes (ACPI 1.0 part)
    t.str(kAcpiOemId, 6);
    t.u8(2);  // revision 2: XSDT and extended fields present
    t.u32(static_cast<uint32_t>(rsdt));
    t.u32(kRsdpSize);
    t.u64(xsdt);
    t.u8(0);  // extended checksum over all 36 bytes
    t.zeros(3);
    t.b[8] = static_cast<uint8_t>(-acpi_checksum(std::span(t.b).first(20)));
    t.b[32] = static_cast<uint8_t>(-acpi_checksum(t.b));
    return t;
}

}  // namespace

uint8_t acpi_checksum(std::span<const uint8_t> bytes) {
    uint8_t sum = 0;
    for (uint8_t c : bytes) sum = static_cast<uint8_t>(sum + c);
    return sum;
}

namespace aml {

std::vector<uint8_t> pkg_length(size_t content_len) {
    // One byte holds lengths up to 63 (6 bits). Longer ones use 1-3 extra
    // bytes: the lead byte carries the count in bits 6-7 and the low nibble,
    // each extra byte 8 more bits. The value counts the PkgLength bytes too.
    for (size_t extra = 0; extra <= 3; ++extra) {
        size_t total = content_len + 1 + extra;
        if (extra == 0) {
            if (total < 0x40) return {static_cast<uint8_t>(total)};
            continue;
        }
        if (total < (size_t{1} << (4 + 8 * extra))) {
            std::vector<uint8_t> out;
            out.push_back(static_cast<uint8_t>((extra << 6) | (total & 0xf)));
            for (size_t i = 0; i < extra; ++i)
                out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
            return out;
        }
    }
    return {};  // > 256 MiB: not representable; our tables are tiny
}

std::vector<uint8_t> integer(uint64_t v) {
    constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kBytePrefix = 0x0a, kWordPrefix = 0x0b,
                      kDWordPrefix = 0x0c, kQWordPrefix = 0x0e;
    if (v == 0) return {kZeroOp};
    if (v == 1) return {kOneOp};
    std::vector<uint8_t> out;
    int n;
    if (v <= 0xff) {
        out.push_back(kBytePrefix);
        n = 1;
    } else if (v <= 0xffff) {
        out.push_back(kWordPrefix);
        n = 2;
    } else if (v <= 0xffffffff) {
        out.push_back(kDWordPrefix);
        n = 4;
    } else {
        out.push_back(kQWordPrefix);
        n = 8;
    }
    for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return out;
}

std::vector<uint8_t> name_package(std::string_view name, std::span<const uint64_t> ints) {
    constexpr uint8_t kNameOp = 0x08, kPackageOp = 0x12;
    std::vector<uint8_t> body;
    body.push_back(static_cast<uint8_t>(ints.size()));  // NumElements
    for (uint64_t v : ints) {
        auto e = integer(v);
        body.insert(body.end(), e.begin(), e.end());
    }
    std::vector<uint8_t> out{kNameOp};
    // NameSeg: exactly 4 chars, '_' padded.
    for (size_t i = 0; i < 4; ++i) out.push_back(i < name.size() ? name[i] : '_');
    out.push_back(kPackageOp);
    auto len = pkg_length(body.size());
    out.insert(out.end(), len.begin(), len.end());
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

namespace {

void le(std::vector<uint8_t>& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

std::vector<uint8_t> name_seg(std::string_view name) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i < 4; ++i) out.push_back(i < name.size() ? name[i] : '_');
    return out;
}

// Name(NAME, <data object>)
std::vector<uint8_t> name_object(std::string_view name, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out{0x08};  // NameOp
    auto seg = name_seg(name);
    out.insert(out.end(), seg.begin(), seg.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

// Word (16-bit) Address Space Descriptor, a producer with fixed min and max.
void word_space(std::vector<uint8_t>& out, uint8_t type, uint8_t type_flags, uint16_t min,
                uint16_t max) {
    out.push_back(0x88);  // large item: Word Address Space
    le(out, 13, 2);       // length of what follows
    out.push_back(type);  // 1: I/O, 2: bus number
    out.push_back(0x0c);  // MinFixed | MaxFixed, positive decode, producer
    out.push_back(type_flags);
    le(out, 0, 2);  // granularity
    le(out, min, 2);
    le(out, max, 2);
    le(out, 0, 2);  // translation
    le(out, static_cast<uint16_t>(max - min + 1), 2);
}

}  // namespace

std::vector<uint8_t> pci_root_bridge(uint64_t mmio_start, uint64_t mmio_end) {
    // _CRS: a resource template in a Buffer.
    std::vector<uint8_t> crs;
    word_space(crs, 2, 0, 0, 0);  // bus numbers 0..0
    // The config mechanism ports themselves (consumed by the bridge).
    crs.insert(crs.end(), {0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08});
    word_space(crs, 1, 0x03, 0x0000, 0x0cf7);  // I/O below the config ports
    word_space(crs, 1, 0x03, 0x0d00, 0xffff);  // and above them
    // DWord Memory: the MMIO window for BARs.
    crs.push_back(0x87);
    le(crs, 23, 2);
    crs.push_back(0);     // memory
    crs.push_back(0x0c);  // MinFixed | MaxFixed, producer
    crs.push_back(0x01);  // read-write, non-cacheable
    le(crs, 0, 4);        // granularity
    le(crs, mmio_start, 4);
    le(crs, mmio_end - 1, 4);
    le(crs, 0, 4);  // translation
    le(crs, mmio_end - mmio_start, 4);
    crs.insert(crs.end(), {0x79, 0x00});  // end tag, checksum 0 ("treat as correct")

    std::vector<uint8_t> buffer{0x11};  // BufferOp
    auto size = integer(crs.size());
    auto plen = pkg_length(size.size() + crs.size());
    buffer.insert(buffer.end(), plen.begin(), plen.end());
    buffer.insert(buffer.end(), size.begin(), size.end());
    buffer.insert(buffer.end(), crs.begin(), crs.end());

    std::vector<uint8_t> body = name_seg("PCI0");
    // EISAID("PNP0A03"): compressed vendor letters, then the product id.
    for (const auto& part :
         {name_object("_HID", {0x0c, 0x41, 0xd0, 0x0a, 0x03}), name_object("_UID", integer(0)),
          name_object("_SEG", integer(0)), name_object("_BBN", integer(0)),
          name_object("_ADR", integer(0)), name_object("_CRS", buffer)})
        body.insert(body.end(), part.begin(), part.end());

    std::vector<uint8_t> out{0x5b, 0x82};  // ExtOpPrefix DeviceOp
    auto len = pkg_length(body.size());
    out.insert(out.end(), len.begin(), len.end());
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

}  // namespace aml

Result<uint64_t> write_acpi_tables(const GuestMemory& mem, unsigned num_cpus) {
    if (num_cpus == 0 || num_cpus > kAcpiMaxCpus)
        return failf("ACPI tables support 1..{} vCPUs, not {}", kAcpiMaxCpus, num_cpus);

    Placer p(mem);
    // The RSDP goes first, at the 16-byte aligned start of the area where
    // kernels without boot_params.acpi_rsdp_addr search for it.
    auto rsdp = p.reserve(kRsdpSize, 16, "RSDP");
    if (!rsdp) return rsdp;
    // Then the rest, leaves before the tables that point at them.
    auto dsdt = p.put(build_dsdt(), 16, "DSDT");
    if (!dsdt) return dsdt;
    auto facs = p.put(build_facs(), 64, "FACS");  // the spec requires 64-byte alignment
    if (!facs) return facs;
    auto madt = p.put(build_madt(num_cpus), 16, "MADT");
    if (!madt) return madt;
    auto fadt = p.put(build_fadt(*dsdt, *facs), 16, "FADT");
    if (!fadt) return fadt;
    const uint64_t roots[] = {*fadt, *madt};
    auto xsdt = p.put(build_xsdt(roots), 16, "XSDT");
    if (!xsdt) return xsdt;
    // An RSDT too, for OSes or acpi=rsdt that ignore the XSDT.
    auto rsdt = p.put(build_rsdt(roots), 16, "RSDT");
    if (!rsdt) return rsdt;
    KS_TRY(p.write(*rsdp, build_rsdp(*rsdt, *xsdt), "RSDP"));
    return *rsdp;
}

}  // namespace kvmsandbox::x86
