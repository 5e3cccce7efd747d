#include "devices/acpi_pm.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/x86/layout.h"

namespace kvmsandbox {
namespace {

class FakeIrq : public IrqLine {
  public:
    void set_level(bool asserted) override { levels.push_back(asserted); }
    bool level() const { return !levels.empty() && levels.back(); }
    std::vector<bool> levels;
};

class AcpiPmTest : public ::testing::Test {
  protected:
    AcpiPmTest() : pm(sci, [this] { ++poweroffs; }) {}

    static uint32_t rd(BusDevice& d, uint64_t off, size_t size) {
        uint8_t b[4] = {};
        d.read(off, std::span<uint8_t>(b, size));
        uint32_t v = 0;
        std::memcpy(&v, b, size);  // x86 is little-endian, like port I/O
        return v;
    }
    static void wr(BusDevice& d, uint64_t off, size_t size, uint32_t v) {
        uint8_t b[4];
        std::memcpy(b, &v, sizeof b);
        d.write(off, std::span<const uint8_t>(b, size));
    }
    static uint16_t slp(uint16_t typ, bool en) {
        return static_cast<uint16_t>((typ << 10) | (en ? 1u << 13 : 0u));
    }

    FakeIrq sci;
    int poweroffs = 0;
    AcpiPm pm;
};

TEST_F(AcpiPmTest, PoweroffOnS5) {
    // Linux writes SLP_TYP first, then SLP_TYP | SLP_EN.
    wr(pm.control_block(), 0, 2, slp(x86::kSlpTypS5, false) | 1);
    EXPECT_EQ(poweroffs, 0);
    wr(pm.control_block(), 0, 2, slp(x86::kSlpTypS5, true) | 1);
    EXPECT_EQ(poweroffs, 1);
}

TEST_F(AcpiPmTest, PoweroffOnS5ByteWrite) {
    wr(pm.control_block(), 1, 1, slp(x86::kSlpTypS5, true) >> 8);
    EXPECT_EQ(poweroffs, 1);
}

TEST_F(AcpiPmTest, NoPoweroffOnOtherSleepTypes) {
    for (uint16_t typ = 0; typ < 8; ++typ) {
        if (typ == x86::kSlpTypS5) continue;
        wr(pm.control_block(), 0, 2, slp(typ, true));
    }
    EXPECT_EQ(poweroffs, 0);
}

TEST_F(AcpiPmTest, ControlReadBack) {
    EXPECT_EQ(rd(pm.control_block(), 0, 2), 1u);  // SCI_EN
    wr(pm.control_block(), 0, 2, slp(3, true));   // SCI_EN written 0, S3 ignored
    uint32_t v = rd(pm.control_block(), 0, 2);
    EXPECT_EQ(v & 1u, 1u);          // SCI_EN still reads 1
    EXPECT_EQ(v & (1u << 13), 0u);  // SLP_EN is write-only
    EXPECT_EQ((v >> 10) & 7u, 3u);  // SLP_TYP kept
    EXPECT_EQ(rd(pm.control_block(), 0, 1), 1u);
    EXPECT_EQ(rd(pm.control_block(), 1, 1), 3u << 2);
}

TEST_F(AcpiPmTest, PowerButtonRaisesSciOnlyWhenEnabled) {
    pm.press_power_button();
    EXPECT_TRUE(sci.levels.empty());
    EXPECT_EQ(rd(pm.event_block(), 0, 2), AcpiPm::kPwrBtnBit);

    // Enabling a pending event raises the SCI.
    wr(pm.event_block(), 2, 2, AcpiPm::kPwrBtnBit);
    EXPECT_TRUE(sci.level());
    EXPECT_EQ(rd(pm.event_block(), 2, 2), AcpiPm::kPwrBtnBit);

    // Writing 0 clears nothing; writing 1 clears and drops the SCI.
    wr(pm.event_block(), 0, 2, 0);
    EXPECT_TRUE(sci.level());
    wr(pm.event_block(), 0, 2, AcpiPm::kPwrBtnBit);
    EXPECT_FALSE(sci.level());
    EXPECT_EQ(rd(pm.event_block(), 0, 2), 0u);

    pm.press_power_button();
    EXPECT_TRUE(sci.level());
    // Byte write-1-to-clear on the high half of PM1_STS.
    wr(pm.event_block(), 1, 1, AcpiPm::kPwrBtnBit >> 8);
    EXPECT_FALSE(sci.level());
    EXPECT_EQ(sci.levels, (std::vector<bool>{true, false, true, false}));
}

TEST_F(AcpiPmTest, DisablingDropsSci) {
    wr(pm.event_block(), 2, 2, AcpiPm::kPwrBtnBit);
    pm.press_power_button();
    EXPECT_TRUE(sci.level());
    wr(pm.event_block(), 2, 2, 0);
    EXPECT_FALSE(sci.level());
    EXPECT_EQ(rd(pm.event_block(), 0, 2), AcpiPm::kPwrBtnBit);  // still pending
}

TEST_F(AcpiPmTest, DwordAccessCoversStatusAndEnable) {
    pm.press_power_button();
    wr(pm.event_block(), 0, 4, uint32_t{AcpiPm::kPwrBtnBit} << 16);  // enable, clear nothing
    EXPECT_TRUE(sci.level());
    EXPECT_EQ(rd(pm.event_block(), 0, 4),
              AcpiPm::kPwrBtnBit | (uint32_t{AcpiPm::kPwrBtnBit} << 16));
    wr(pm.event_block(), 0, 4, AcpiPm::kPwrBtnBit | (uint32_t{AcpiPm::kPwrBtnBit} << 16));
    EXPECT_FALSE(sci.level());
    EXPECT_EQ(rd(pm.event_block(), 0, 4), uint32_t{AcpiPm::kPwrBtnBit} << 16);
    // Byte reads of the enable register halves.
    EXPECT_EQ(rd(pm.event_block(), 3, 1), AcpiPm::kPwrBtnBit >> 8);
    EXPECT_EQ(rd(pm.event_block(), 2, 1), 0u);
}

}  // namespace
}  // namespace kvmsandbox
