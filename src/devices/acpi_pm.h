// ACPI fixed hardware: the PM1a event block (PM1_STS, PM1_EN) and control
// block (PM1_CNT) that the FADT points at. Through them the guest powers off
// (SLP_TYP = S5 with SLP_EN) and learns of power-button presses (an SCI).
//
// Registration: two BusDevice adaptors on the I/O bus,
//   bus.add(x86::kPm1aEvtPort, x86::kPm1aEvtLen, &pm.event_block());
//   bus.add(x86::kPm1aCntPort, x86::kPm1aCntLen, &pm.control_block());
// Accesses of any width at any offset inside a block work byte by byte, so
// a byte access reaches half of a 16-bit register.
//
// The machine is always in ACPI mode (SCI_EN reads 1; there is no SMI_CMD to
// switch). Sleep states other than S5 are ignored: the DSDT announces none.
//
// Locking: one mutex guards the registers. IrqLine::set_level is called with
// it held (IrqLine implementations must not call back into this device);
// on_poweroff is called without it.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/irq_line.h"

namespace kvmsandbox {

class AcpiPm {
  public:
    // PM1_STS / PM1_EN bits.
    static constexpr uint16_t kTmrBit = 1u << 0;
    static constexpr uint16_t kGblBit = 1u << 5;
    static constexpr uint16_t kPwrBtnBit = 1u << 8;
    static constexpr uint16_t kSlpBtnBit = 1u << 9;
    static constexpr uint16_t kRtcBit = 1u << 10;
    static constexpr uint16_t kWakStsBit = 1u << 15;
    // PM1_CNT bits.
    static constexpr uint16_t kSciEn = 1u << 0;
    static constexpr unsigned kSlpTypShift = 10;
    static constexpr uint16_t kSlpTypMask = 7u << kSlpTypShift;
    static constexpr uint16_t kSlpEn = 1u << 13;

    // sci: the SCI line (x86::kSciIrq). on_poweroff: the guest entered S5.
    AcpiPm(IrqLine& sci, std::function<void()> on_poweroff);

    AcpiPm(const AcpiPm&) = delete;
    AcpiPm& operator=(const AcpiPm&) = delete;

    BusDevice& event_block() { return event_block_; }      // PM1_STS @0, PM1_EN @2
    BusDevice& control_block() { return control_block_; }  // PM1_CNT @0

    // The host asks the guest to shut down (ACPI power button): sets
    // PWRBTN_STS; the SCI rises if the guest enabled PWRBTN_EN. Thread-safe.
    void press_power_button();

  private:
    class Block : public BusDevice {
      public:
        Block(AcpiPm& owner, bool control) : owner_(owner), control_(control) {}
        void read(uint64_t offset, std::span<uint8_t> data) override;
        void write(uint64_t offset, std::span<const uint8_t> data) override;

      private:
        AcpiPm& owner_;
        bool control_;
    };

    void update_sci_locked();

    IrqLine& sci_;
    std::function<void()> on_poweroff_;
    Block event_block_{*this, false};
    Block control_block_{*this, true};

    std::mutex mu_;
    uint16_t sts_ = 0;
    uint16_t en_ = 0;
    uint16_t cnt_ = kSciEn;
    bool sci_level_ = false;
};

}  // namespace kvmsandbox
