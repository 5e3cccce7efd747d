// The MC146818 real-time clock and CMOS RAM: the guest reads the wall clock
// from it at boot. Register it on the I/O bus at x86::kCmosPort with length
// kPortCount (0x70 index, 0x71 data).
//
// The clock registers are computed from now() (UTC) on every read, so the
// guest always sees the host's time and the clock never drifts or needs an
// update cycle (status A's UIP bit is always clear). Guest writes to the time
// and date registers (0x00, 0x02, 0x04, 0x06-0x09, 0x32) are ignored: the
// sandbox does not let a guest move its clock (hwclock --systohc is a no-op).
// Status B is kept, so the guest may choose binary or 12-hour encoding. No
// RTC interrupts are generated (status C always reads 0). Every other index
// is plain RAM that reads back what was written.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.h"

namespace kvmsandbox {

class CmosRtc : public BusDevice {
  public:
    static constexpr uint64_t kPortCount = 2;

    explicit CmosRtc(std::function<time_t()> now = [] { return std::time(nullptr); });

    CmosRtc(const CmosRtc&) = delete;
    CmosRtc& operator=(const CmosRtc&) = delete;

    // BusDevice. Offset 0 selects the register (bit 7, the NMI mask on real
    // boards, is dropped); offset 1 reads or writes it. Index reads return 0xff.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

  private:
    uint8_t read_reg_locked(uint8_t reg);
    void write_reg_locked(uint8_t reg, uint8_t v);
    uint8_t encode_locked(int value) const;  // BCD or binary per status B

    std::function<time_t()> now_;
    std::mutex mu_;
    uint8_t index_ = 0;
    std::array<uint8_t, 128> ram_{};
};

}  // namespace kvmsandbox
