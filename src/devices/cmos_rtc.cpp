#include "devices/cmos_rtc.h"

namespace kvmsandbox {

namespace {

constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kWeekday = 0x06;
constexpr uint8_t kDay = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kStatusA = 0x0a;
constexpr uint8_t kStatusB = 0x0b;
constexpr uint8_t kStatusC = 0x0c;
constexpr uint8_t kStatusD = 0x0d;
constexpr uint8_t kCentury = 0x32;

constexpr uint8_t kStatusAUip = 0x80;
constexpr uint8_t kStatusADefault = 0x26;  // 32.768 kHz time base, 1024 Hz periodic rate
constexpr uint8_t kStatusB24h = 0x02;
constexpr uint8_t kStatusBBinary = 0x04;
constexpr uint8_t kStatusDValid = 0x80;  // battery good: RAM and time are valid
constexpr uint8_t kHourPm = 0x80;        // 12-hour mode PM flag in the hours register

constexpr uint8_t kIndexMask = 0x7f;  // bit 7 of the index port is the NMI disable

}  // namespace

CmosRtc::CmosRtc(std::function<time_t()> now) : now_(std::move(now)) {
    ram_[kStatusA] = kStatusADefault;
    ram_[kStatusB] = kStatusB24h;
    ram_[kStatusD] = kStatusDValid;
}

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i == 1 ? read_reg_locked(index_) : 0xff;
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        if (offset + i == 0)
            index_ = data[i] & kIndexMask;
        else if (offset + i == 1)
            write_reg_locked(index_, data[i]);
    }
}

uint8_t CmosRtc::encode_locked(int value) const {
    if (ram_[kStatusB] & kStatusBBinary) return static_cast<uint8_t>(value);
    return static_cast<uint8_t>(((value / 10) << 4) | (value % 10));
}

uint8_t CmosRtc::read_reg_locked(uint8_t reg) {
    switch (reg) {
        case kSeconds:
        case kMinutes:
        case kHours:
        case kWeekday:
        case kDay:
        case kMonth:
        case kYear:
        case kCentury:
            break;
        case kStatusA:
            return ram_[kStatusA] & ~kStatusAUip;
        case kStatusC:
            return 0;  // no interrupt flags: we raise none
        case kStatusD:
            return kStatusDValid;
        default:
            return ram_[reg];
    }

    time_t t = now_ ? now_() : std::time(nullptr);
    struct tm tm {};
    gmtime_r(&t, &tm);
    switch (reg) {
        case kSeconds:
            return encode_locked(tm.tm_sec);
        case kMinutes:
            return encode_locked(tm.tm_min);
        case kHours: {
            if (ram_[kStatusB] & kStatusB24h) return encode_locked(tm.tm_hour);
            // 12-hour mode: 12, 1..11 with the PM flag in bit 7.
            int h = tm.tm_hour % 12;
            return encode_locked(h == 0 ? 12 : h) | (tm.tm_hour >= 12 ? kHourPm : 0);
        }
        case kWeekday:
            return encode_locked(tm.tm_wday + 1);  // 1 = Sunday
        case kDay:
            return encode_locked(tm.tm_mday);
        case kMonth:
            return encode_locked(tm.tm_mon + 1);
        case kYear:
            return encode_locked(tm.tm_year % 100);
        case kCentury:
            return encode_locked((tm.tm_year + 1900) / 100);
    }
    return 0xff;
}

void CmosRtc::write_reg_locked(uint8_t reg, uint8_t v) {
    switch (reg) {
        case kSeconds:
        case kMinutes:
        case kHours:
        case kWeekday:
        case kDay:
        case kMonth:
        case kYear:
        case kCentury:
            return;  // the clock follows the host; see the header
        case kStatusA:
            ram_[kStatusA] = v & ~kStatusAUip;  // UIP is read-only
            return;
        case kStatusC:
        case kStatusD:
            return;  // read-only
        default:
            ram_[reg] = v;
            return;
    }
}

}  // namespace kvmsandbox
