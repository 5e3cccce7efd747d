#include "devices/cmos_rtc.h"

#include <gtest/gtest.h>

#include <ctime>

namespace kvmsandbox {
namespace {

// 2026-11-25 13:45:07 UTC, a Wednesday.
time_t fixed_time() {
    struct tm tm {};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 10;
    tm.tm_mday = 25;
    tm.tm_hour = 13;
    tm.tm_min = 45;
    tm.tm_sec = 7;
    return timegm(&tm);
}

class CmosRtcTest : public ::testing::Test {
  protected:
    CmosRtcTest() : rtc([this] { return now; }) {}

    uint8_t reg(uint8_t index) {
        rtc.write(0, std::span<const uint8_t>(&index, 1));
        uint8_t v = 0;
        rtc.read(1, std::span<uint8_t>(&v, 1));
        return v;
    }
    void set(uint8_t index, uint8_t v) {
        rtc.write(0, std::span<const uint8_t>(&index, 1));
        rtc.write(1, std::span<const uint8_t>(&v, 1));
    }

    time_t now = fixed_time();
    CmosRtc rtc;
};

TEST_F(CmosRtcTest, BcdTime) {
    EXPECT_EQ(reg(0x00), 0x07);
    EXPECT_EQ(reg(0x02), 0x45);
    EXPECT_EQ(reg(0x04), 0x13);
    EXPECT_EQ(reg(0x06), 0x04);  // Wednesday (Sunday = 1)
    EXPECT_EQ(reg(0x07), 0x25);
    EXPECT_EQ(reg(0x08), 0x11);
    EXPECT_EQ(reg(0x09), 0x26);
    EXPECT_EQ(reg(0x32), 0x20);
}

TEST_F(CmosRtcTest, FollowsClock) {
    now += 60 * 60 * 24 * 36 + 3;  // 2026-12-31 13:45:10
    EXPECT_EQ(reg(0x00), 0x10);
    EXPECT_EQ(reg(0x07), 0x31);
    EXPECT_EQ(reg(0x08), 0x12);
    now += 60 * 60 * 11;  // 2027-01-01 00:45:10
    EXPECT_EQ(reg(0x09), 0x27);
    EXPECT_EQ(reg(0x04), 0x00);
}

TEST_F(CmosRtcTest, StatusRegisters) {
    EXPECT_EQ(reg(0x0a), 0x26);  // UIP clear
    EXPECT_EQ(reg(0x0b), 0x02);  // 24h, BCD
    EXPECT_EQ(reg(0x0c), 0x00);
    EXPECT_EQ(reg(0x0d), 0x80);  // valid RAM and time
    set(0x0a, 0xa6);
    EXPECT_EQ(reg(0x0a), 0x26);  // UIP is read-only
    set(0x0d, 0x00);
    EXPECT_EQ(reg(0x0d), 0x80);
}

TEST_F(CmosRtcTest, BinaryMode) {
    set(0x0b, 0x06);
    EXPECT_EQ(reg(0x0b), 0x06);
    EXPECT_EQ(reg(0x00), 7);
    EXPECT_EQ(reg(0x02), 45);
    EXPECT_EQ(reg(0x04), 13);
    EXPECT_EQ(reg(0x07), 25);
    EXPECT_EQ(reg(0x08), 11);
    EXPECT_EQ(reg(0x09), 26);
    EXPECT_EQ(reg(0x32), 20);
}

TEST_F(CmosRtcTest, TwelveHourMode) {
    set(0x0b, 0x00);
    EXPECT_EQ(reg(0x04), 0x81);  // 1 PM
    set(0x0b, 0x04);             // binary, 12h
    EXPECT_EQ(reg(0x04), 0x81);
    now -= 13 * 3600;  // 00:45 -> 12 AM
    EXPECT_EQ(reg(0x04), 12);
    now += 12 * 3600;  // 12:45 -> 12 PM
    EXPECT_EQ(reg(0x04), 0x80 | 12);
}

TEST_F(CmosRtcTest, NmiBitMasked) {
    EXPECT_EQ(reg(0x80 | 0x00), 0x07);
    EXPECT_EQ(reg(0x80 | 0x0d), 0x80);
    set(0x80 | 0x40, 0x99);
    EXPECT_EQ(reg(0x40), 0x99);
}

TEST_F(CmosRtcTest, RamReadsBackAndTimeWritesIgnored) {
    for (uint8_t i = 0x0e; i < 0x80; ++i) {
        if (i == 0x32) continue;
        set(i, static_cast<uint8_t>(i ^ 0x5a));
    }
    for (uint8_t i = 0x0e; i < 0x80; ++i) {
        if (i == 0x32) continue;
        EXPECT_EQ(reg(i), static_cast<uint8_t>(i ^ 0x5a)) << int(i);
    }
    set(0x00, 0x59);
    set(0x09, 0x99);
    EXPECT_EQ(reg(0x00), 0x07);
    EXPECT_EQ(reg(0x09), 0x26);
    // Alarm registers are plain RAM.
    set(0x01, 0x30);
    EXPECT_EQ(reg(0x01), 0x30);
}

TEST_F(CmosRtcTest, IndexPortReadsFF) {
    uint8_t v = 0;
    rtc.read(0, std::span<uint8_t>(&v, 1));
    EXPECT_EQ(v, 0xff);
}

TEST(CmosRtcDefault, WallClockIsPlausible) {
    CmosRtc rtc;
    uint8_t idx = 0x32;
    rtc.write(0, std::span<const uint8_t>(&idx, 1));
    uint8_t v = 0;
    rtc.read(1, std::span<uint8_t>(&v, 1));
    EXPECT_EQ(v, 0x20);
}

}  // namespace
}  // namespace kvmsandbox
