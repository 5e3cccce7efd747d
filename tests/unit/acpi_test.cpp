#include "arch/x86/acpi.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "arch/x86/layout.h"

namespace kvmsandbox::x86 {
namespace {

// 2 MiB of fake guest RAM at gpa 0 covers the ACPI area below 1 MiB.
struct FakeRam {
    FakeRam() : buf(2 << 20, 0), mem({MemoryRegion{0, buf.size(), buf.data()}}) {}
    std::vector<uint8_t> buf;
    GuestMemory mem;
    uint8_t u8(uint64_t a) const { return buf.at(a); }
    uint16_t u16(uint64_t a) const { return static_cast<uint16_t>(u8(a) | u8(a + 1) << 8); }
    uint32_t u32(uint64_t a) const { return u16(a) | uint32_t{u16(a + 2)} << 16; }
    uint64_t u64(uint64_t a) const { return u32(a) | uint64_t{u32(a + 4)} << 32; }
    std::string str(uint64_t a, size_t n) const {
        return std::string(reinterpret_cast<const char*>(&buf.at(a)), n);
    }
    std::span<const uint8_t> bytes(uint64_t a, size_t n) const {
        return std::span<const uint8_t>(buf).subspan(a, n);
    }
    // Checks a System Description Table at `a` and returns its length.
    uint32_t table(uint64_t a, const char* sig) const {
        EXPECT_EQ(str(a, 4), sig);
        uint32_t len = u32(a + 4);
        EXPECT_GE(len, 36u);
        EXPECT_GE(a, kAcpiTablesAddr);
        EXPECT_LE(a + len, kAcpiTablesEnd);
        EXPECT_EQ(acpi_checksum(bytes(a, len)), 0) << sig;
        EXPECT_EQ(str(a + 10, 6), "KVMSBX") << sig;
        return len;
    }
};

struct Tables {
    uint64_t rsdp, xsdt, rsdt, fadt, madt, dsdt, facs;
};

Tables parse(const FakeRam& r, uint64_t rsdp) {
    Tables t{};
    t.rsdp = rsdp;
    EXPECT_EQ(r.str(rsdp, 8), "RSD PTR ");
    EXPECT_EQ(rsdp % 16, 0u);
    EXPECT_EQ(acpi_checksum(r.bytes(rsdp, 20)), 0);
    EXPECT_EQ(r.u8(rsdp + 15), 2);  // revision
    EXPECT_EQ(r.u32(rsdp + 20), 36u);
    EXPECT_EQ(acpi_checksum(r.bytes(rsdp, 36)), 0);
    EXPECT_EQ(r.str(rsdp + 9, 6), "KVMSBX");
    t.rsdt = r.u32(rsdp + 16);
    t.xsdt = r.u64(rsdp + 24);

    uint32_t xlen = r.table(t.xsdt, "XSDT");
    EXPECT_EQ((xlen - 36) % 8, 0u);
    for (uint32_t off = 36; off < xlen; off += 8) {
        uint64_t a = r.u64(t.xsdt + off);
        std::string sig = r.str(a, 4);
        if (sig == "FACP") t.fadt = a;
        if (sig == "APIC") t.madt = a;
    }
    uint32_t rlen = r.table(t.rsdt, "RSDT");
    EXPECT_EQ(rlen, 36u + (xlen - 36) / 2);
    for (uint32_t off = 36, i = 36; off < rlen; off += 4, i += 8)
        EXPECT_EQ(r.u32(t.rsdt + off), r.u64(t.xsdt + i));
    return t;
}

TEST(AcpiTest, RsdpXsdtFadtDsdt) {
    FakeRam r;
    auto rsdp = write_acpi_tables(r.mem, 1);
    ASSERT_TRUE(rsdp.has_value()) << rsdp.error().message;
    EXPECT_EQ(*rsdp, kAcpiTablesAddr);
    auto t = parse(r, *rsdp);
    ASSERT_NE(t.fadt, 0u);
    ASSERT_NE(t.madt, 0u);

    // FADT revision 6, full length, not hardware reduced.
    EXPECT_EQ(r.table(t.fadt, "FACP"), 276u);
    EXPECT_EQ(r.u8(t.fadt + 8), 6);
    t.dsdt = r.u32(t.fadt + 40);
    EXPECT_EQ(r.u64(t.fadt + 140), t.dsdt);  // X_DSDT
    t.facs = r.u32(t.fadt + 36);
    EXPECT_EQ(r.u16(t.fadt + 46), kSciIrq);
    EXPECT_EQ(r.u32(t.fadt + 48), 0u);  // SMI_CMD
    EXPECT_EQ(r.u32(t.fadt + 56), kPm1aEvtPort);
    EXPECT_EQ(r.u32(t.fadt + 64), kPm1aCntPort);
    EXPECT_EQ(r.u32(t.fadt + 76), 0u);  // no PM timer
    EXPECT_EQ(r.u8(t.fadt + 88), kPm1aEvtLen);
    EXPECT_EQ(r.u8(t.fadt + 89), kPm1aCntLen);
    EXPECT_EQ(r.u8(t.fadt + 91), 0);  // PM_TMR_LEN
    uint16_t boot_arch = r.u16(t.fadt + 109);
    EXPECT_TRUE(boot_arch & (1 << 1));  // 8042
    EXPECT_TRUE(boot_arch & (1 << 2));  // no VGA
    uint32_t flags = r.u32(t.fadt + 112);
    EXPECT_TRUE(flags & (1 << 0));    // WBINVD
    EXPECT_TRUE(flags & (1 << 2));    // PROC_C1
    EXPECT_TRUE(flags & (1 << 5));    // SLP_BUTTON
    EXPECT_FALSE(flags & (1 << 10));  // RESET_REG_SUP
    EXPECT_FALSE(flags & (1 << 20));  // HW_REDUCED_ACPI
    // X_PM1a_EVT_BLK / X_PM1a_CNT_BLK: system I/O GAS matching the legacy fields.
    EXPECT_EQ(r.u8(t.fadt + 148), 1);
    EXPECT_EQ(r.u8(t.fadt + 149), kPm1aEvtLen * 8);
    EXPECT_EQ(r.u64(t.fadt + 152), kPm1aEvtPort);
    EXPECT_EQ(r.u8(t.fadt + 172), 1);
    EXPECT_EQ(r.u8(t.fadt + 173), kPm1aCntLen * 8);
    EXPECT_EQ(r.u64(t.fadt + 176), kPm1aCntPort);

    // FACS: 64-byte aligned, 64 bytes.
    EXPECT_EQ(r.str(t.facs, 4), "FACS");
    EXPECT_EQ(r.u32(t.facs + 4), 64u);
    EXPECT_EQ(t.facs % 64, 0u);

    // DSDT with Name(_S5_, Package(){5, 5, 0, 0}).
    uint32_t dlen = r.table(t.dsdt, "DSDT");
    std::string aml = r.str(t.dsdt + 36, dlen - 36);
    const uint8_t s5[] = {0x08, '_',  'S',       '5',  '_',       0x12, 0x08,
                          0x04, 0x0a, kSlpTypS5, 0x0a, kSlpTypS5, 0x00, 0x00};
    EXPECT_NE(aml.find(std::string(reinterpret_cast<const char*>(s5), sizeof(s5))),
              std::string::npos);
}

// MADT entries by type.
struct Madt {
    unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;
    std::vector<std::pair<uint8_t, uint8_t>> lapic_ids;  // uid, apic id
    uint8_t ioapic_id = 0;
    uint32_t ioapic_addr = 0;
    std::vector<std::tuple<uint8_t, uint32_t, uint16_t>> overrides;
};

Madt parse_madt(const FakeRam& r, uint64_t a) {
    Madt m;
    uint32_t len = r.table(a, "APIC");
    EXPECT_EQ(r.u32(a + 36), kLapicAddr);
    EXPECT_EQ(r.u32(a + 40) & 1, 1u);  // PCAT_COMPAT
    for (uint64_t p = a + 44; p < a + len;) {
        uint8_t type = r.u8(p), elen = r.u8(p + 1);
        EXPECT_GE(elen, 2);
        if (elen < 2) break;
        switch (type) {
            case 0:
                EXPECT_EQ(elen, 8);
                ++m.lapics;
                m.lapic_ids.push_back({r.u8(p + 2), r.u8(p + 3)});
                EXPECT_EQ(r.u32(p + 4), 1u);
                break;
            case 1:
                EXPECT_EQ(elen, 12);
                ++m.ioapics;
                m.ioapic_id = r.u8(p + 2);
                m.ioapic_addr = r.u32(p + 4);
                EXPECT_EQ(r.u32(p + 8), 0u);
                break;
            case 2:
                EXPECT_EQ(elen, 10);
                ++m.isos;
                m.overrides.push_back({r.u8(p + 3), r.u32(p + 4), r.u16(p + 8)});
                break;
            case 4:
                EXPECT_EQ(elen, 6);
                ++m.nmis;
                EXPECT_EQ(r.u8(p + 2), 0xff);
                EXPECT_EQ(r.u8(p + 5), 1);
                break;
            default:
                ADD_FAILURE() << "unexpected MADT entry type " << int(type);
        }
        p += elen;
    }
    return m;
}

TEST(AcpiTest, MadtForOneAndFourCpus) {
    for (unsigned n : {1u, 4u}) {
        FakeRam r;
        auto rsdp = write_acpi_tables(r.mem, n);
        ASSERT_TRUE(rsdp.has_value()) << rsdp.error().message;
        auto t = parse(r, *rsdp);
        auto m = parse_madt(r, t.madt);
        EXPECT_EQ(m.lapics, n);
        for (unsigned i = 0; i < n; ++i)
            EXPECT_EQ(m.lapic_ids[i], (std::pair<uint8_t, uint8_t>(i, i)));
        EXPECT_EQ(m.ioapics, 1u);
        EXPECT_EQ(m.ioapic_id, n);
        EXPECT_EQ(m.ioapic_addr, kIoapicAddr);
        ASSERT_EQ(m.isos, 2u);
        EXPECT_EQ(m.overrides[0], (std::tuple<uint8_t, uint32_t, uint16_t>(0, 2, 0x5)));
        EXPECT_EQ(m.overrides[1], (std::tuple<uint8_t, uint32_t, uint16_t>(kSciIrq, kSciIrq, 0xd)));
        EXPECT_EQ(m.nmis, 1u);
    }
}

TEST(AcpiTest, ManyCpusFitAndLimits) {
    FakeRam r;
    auto rsdp = write_acpi_tables(r.mem, kAcpiMaxCpus);
    ASSERT_TRUE(rsdp.has_value()) << rsdp.error().message;
    auto t = parse(r, *rsdp);
    EXPECT_EQ(parse_madt(r, t.madt).lapics, kAcpiMaxCpus);
    EXPECT_FALSE(write_acpi_tables(r.mem, 0).has_value());
    EXPECT_FALSE(write_acpi_tables(r.mem, kAcpiMaxCpus + 1).has_value());
}

TEST(AcpiTest, FailsWithoutRamForTables) {
    std::vector<uint8_t> buf(0x1000);
    GuestMemory mem({MemoryRegion{0, buf.size(), buf.data()}});
    auto r = write_acpi_tables(mem, 1);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("not guest RAM"), std::string::npos) << r.error().message;
}

TEST(AcpiTest, AmlPkgLength) {
    EXPECT_EQ(aml::pkg_length(7), (std::vector<uint8_t>{0x08}));
    EXPECT_EQ(aml::pkg_length(62), (std::vector<uint8_t>{0x3f}));
    // 63 content bytes + 2 length bytes = 65 = 0x41: lead 0x41 (1 extra, low nibble 1), then 0x04.
    EXPECT_EQ(aml::pkg_length(63), (std::vector<uint8_t>{0x41, 0x04}));
    // 0x1000 - 2 content -> total 0x1001 needs 3 bytes: 0x1002.
    EXPECT_EQ(aml::pkg_length(0xfff), (std::vector<uint8_t>{0x82, 0x00, 0x01}));
}

TEST(AcpiTest, AmlIntegers) {
    EXPECT_EQ(aml::integer(0), (std::vector<uint8_t>{0x00}));
    EXPECT_EQ(aml::integer(1), (std::vector<uint8_t>{0x01}));
    EXPECT_EQ(aml::integer(5), (std::vector<uint8_t>{0x0a, 0x05}));
    EXPECT_EQ(aml::integer(0x1234), (std::vector<uint8_t>{0x0b, 0x34, 0x12}));
    EXPECT_EQ(aml::integer(0x12345678), (std::vector<uint8_t>{0x0c, 0x78, 0x56, 0x34, 0x12}));
    EXPECT_EQ(aml::integer(1ull << 32).size(), 9u);
}

}  // namespace
}  // namespace kvmsandbox::x86
