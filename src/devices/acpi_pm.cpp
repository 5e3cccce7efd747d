#include "devices/acpi_pm.h"

#include "arch/x86/layout.h"

namespace kvmsandbox {

namespace {

// Status bits that can raise the SCI when their enable bit is set.
constexpr uint16_t kEventBits =
    AcpiPm::kTmrBit | AcpiPm::kGblBit | AcpiPm::kPwrBtnBit | AcpiPm::kSlpBtnBit | AcpiPm::kRtcBit;
// PM1_EN bits the guest may set: the event bits plus PCIEXP_WAKE_DIS (14).
constexpr uint16_t kEnWritable = kEventBits | (1u << 14);
// PM1_CNT bits that are stored: BM_RLD (1) and SLP_TYP. GBL_RLS (2) and
// SLP_EN are write-only actions; SCI_EN is fixed at 1.
constexpr uint16_t kCntStored = (1u << 1) | AcpiPm::kSlpTypMask;

uint8_t byte_of(uint16_t v, uint64_t i) {
    return static_cast<uint8_t>(v >> (8 * i));
}

uint16_t with_byte(uint16_t v, uint64_t i, uint8_t b) {
    unsigned shift = 8 * static_cast<unsigned>(i);
    return static_cast<uint16_t>((v & ~(0xffu << shift)) | (unsigned{b} << shift));
}

}  // namespace

AcpiPm::AcpiPm(IrqLine& sci, std::function<void()> on_poweroff)
    : sci_(sci), on_poweroff_(std::move(on_poweroff)) {}

void AcpiPm::Block::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(owner_.mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        uint64_t off = offset + i;
        uint8_t v = 0xff;  // bytes past the block, if an access runs over its end
        if (control_) {
            if (off < 2) v = byte_of(owner_.cnt_ | kSciEn, off);
        } else if (off < 2) {
            v = byte_of(owner_.sts_, off);
        } else if (off < 4) {
            v = byte_of(owner_.en_, off - 2);
        }
        data[i] = v;
    }
}

void AcpiPm::Block::write(uint64_t offset, std::span<const uint8_t> data) {
    bool poweroff = false;
    {
        std::lock_guard lock(owner_.mu_);
        if (control_) {
            // Assemble the written value first: with a byte access SLP_TYP
            // and SLP_EN arrive together in the high byte.
            uint16_t value = owner_.cnt_;
            bool touched = false;
            for (size_t i = 0; i < data.size(); ++i) {
                uint64_t off = offset + i;
                if (off < 2) {
                    value = with_byte(value, off, data[i]);
                    touched = true;
                }
            }
            if (touched) {
                owner_.cnt_ = (value & kCntStored) | kSciEn;
                uint16_t slp_typ = (value & kSlpTypMask) >> kSlpTypShift;
                poweroff = (value & kSlpEn) && slp_typ == x86::kSlpTypS5;
            }
        } else {
            for (size_t i = 0; i < data.size(); ++i) {
                uint64_t off = offset + i;
                if (off < 2) {
                    // Write 1 to clear: the guest acknowledges the events it saw.
                    owner_.sts_ &= static_cast<uint16_t>(~(unsigned{data[i]} << (8 * off)));
                } else if (off < 4) {
                    owner_.en_ = with_byte(owner_.en_, off - 2, data[i]) & kEnWritable;
                }
            }
            owner_.update_sci_locked();
        }
    }
    if (poweroff && owner_.on_poweroff_) owner_.on_poweroff_();
}

void AcpiPm::press_power_button() {
    std::lock_guard lock(mu_);
    sts_ |= kPwrBtnBit;
    update_sci_locked();
}

void AcpiPm::update_sci_locked() {
    // SCI is level-triggered (active while any enabled event is pending).
    bool level = (sts_ & en_ & kEventBits) != 0;
    if (level == sci_level_) return;
    sci_level_ = level;
    sci_.set_level(level);
}

}  // namespace kvmsandbox
