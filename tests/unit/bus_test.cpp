#include "devices/bus.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace kvmsandbox {
namespace {

// Records the last access; reads return `fill`.
class RecordingDevice : public BusDevice {
  public:
    explicit RecordingDevice(uint8_t fill = 0) : fill(fill) {}
    void read(uint64_t offset, std::span<uint8_t> data) override {
        ++reads;
        last_offset = offset;
        last_size = data.size();
        for (auto& b : data) b = fill;
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        ++writes;
        last_offset = offset;
        last_size = data.size();
        written.assign(data.begin(), data.end());
    }

    uint8_t fill;
    int reads = 0;
    int writes = 0;
    uint64_t last_offset = ~uint64_t{0};
    size_t last_size = 0;
    std::vector<uint8_t> written;
};

TEST(BusTest, RejectsOverlaps) {
    Bus bus("io");
    RecordingDevice a, b;
    ASSERT_TRUE(bus.add(0x100, 0x10, &a).has_value());

    EXPECT_FALSE(bus.add(0x100, 0x10, &b).has_value());  // exactly the same
    EXPECT_FALSE(bus.add(0x0f8, 0x10, &b).has_value());  // overlaps the start
    EXPECT_FALSE(bus.add(0x108, 0x10, &b).has_value());  // overlaps the end
    EXPECT_FALSE(bus.add(0x104, 0x04, &b).has_value());  // inside
    EXPECT_FALSE(bus.add(0x0f0, 0x40, &b).has_value());  // contains
    EXPECT_FALSE(bus.add(0x10f, 0x01, &b).has_value());  // last byte
    EXPECT_FALSE(bus.add(0x0ff, 0x02, &b).has_value());  // first byte
    EXPECT_FALSE(bus.add(0x100, 0x01, &b).has_value());  // same base, shorter

    // A failed add changes nothing.
    uint8_t v = 0;
    EXPECT_TRUE(bus.read(0x108, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(a.reads, 1);
    EXPECT_EQ(b.reads, 0);
}

TEST(BusTest, RejectsOverlapWithNeighbourOnEitherSide) {
    Bus bus("io");
    RecordingDevice a, b, c;
    ASSERT_TRUE(bus.add(0x100, 0x10, &a).has_value());
    ASSERT_TRUE(bus.add(0x200, 0x10, &b).has_value());
    EXPECT_FALSE(bus.add(0x10f, 0x20, &c).has_value());   // tail of the lower one
    EXPECT_FALSE(bus.add(0x1f0, 0x11, &c).has_value());   // head of the upper one
    EXPECT_FALSE(bus.add(0x080, 0x200, &c).has_value());  // spans both
    EXPECT_TRUE(bus.add(0x110, 0xf0, &c).has_value());    // exactly the gap
}

TEST(BusTest, AllowsAdjacentRanges) {
    Bus bus("io");
    RecordingDevice a, below, above;
    ASSERT_TRUE(bus.add(0x100, 0x10, &a).has_value());
    EXPECT_TRUE(bus.add(0x0f0, 0x10, &below).has_value());
    EXPECT_TRUE(bus.add(0x110, 0x10, &above).has_value());

    uint8_t v = 0;
    bus.read(0x0ff, std::span<uint8_t>(&v, 1));
    bus.read(0x100, std::span<uint8_t>(&v, 1));
    bus.read(0x10f, std::span<uint8_t>(&v, 1));
    bus.read(0x110, std::span<uint8_t>(&v, 1));
    EXPECT_EQ(below.reads, 1);
    EXPECT_EQ(below.last_offset, 0xfu);
    EXPECT_EQ(a.reads, 2);
    EXPECT_EQ(a.last_offset, 0xfu);
    EXPECT_EQ(above.reads, 1);
    EXPECT_EQ(above.last_offset, 0u);
}

TEST(BusTest, RejectsEmptyAndWrappingRanges) {
    Bus bus("mmio");
    RecordingDevice a;
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    EXPECT_FALSE(bus.add(0x100, 0, &a).has_value());
    EXPECT_FALSE(bus.add(kMax, 2, &a).has_value());
    EXPECT_FALSE(bus.add(kMax - 0xf, 0x20, &a).has_value());
    EXPECT_FALSE(bus.add(1, kMax, &a).has_value());
    // The highest representable range that does not wrap is fine.
    EXPECT_TRUE(bus.add(kMax - 0x10, 0x10, &a).has_value());
}

TEST(BusTest, DispatchesWithOffset) {
    Bus bus("io");
    RecordingDevice uart(0x42);
    ASSERT_TRUE(bus.add(0x3f8, 8, &uart).has_value());

    uint8_t v = 0;
    EXPECT_TRUE(bus.read(0x3fd, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(uart.last_offset, 5u);
    EXPECT_EQ(uart.last_size, 1u);
    EXPECT_EQ(v, 0x42);

    const uint8_t w[2] = {0x12, 0x34};
    EXPECT_TRUE(bus.write(0x3f8, w));
    EXPECT_EQ(uart.last_offset, 0u);
    EXPECT_EQ(uart.written, (std::vector<uint8_t>{0x12, 0x34}));

    uint8_t wide[4] = {};
    EXPECT_TRUE(bus.read(0x3fc, wide));
    EXPECT_EQ(uart.last_offset, 4u);
    EXPECT_EQ(uart.last_size, 4u);
    EXPECT_EQ(bus.unclaimed_accesses(), 0u);
}

TEST(BusTest, UnclaimedAccesses) {
    Bus bus("io");
    RecordingDevice a;
    ASSERT_TRUE(bus.add(0x100, 0x10, &a).has_value());
    ASSERT_TRUE(bus.add(0x200, 0x10, &a).has_value());

    uint8_t buf[4] = {1, 2, 3, 4};
    EXPECT_FALSE(bus.read(0x80, buf));  // below everything
    EXPECT_EQ(buf[0], 0xff);
    EXPECT_EQ(buf[1], 0xff);
    EXPECT_EQ(buf[2], 0xff);
    EXPECT_EQ(buf[3], 0xff);
    EXPECT_FALSE(bus.read(0x110, buf));  // just past the first range
    EXPECT_FALSE(bus.read(0x1ff, buf));  // just before the second
    EXPECT_FALSE(bus.read(0x300, buf));  // above everything
    const uint8_t w = 0;
    EXPECT_FALSE(bus.write(0x150, std::span<const uint8_t>(&w, 1)));
    EXPECT_EQ(a.reads + a.writes, 0);
    EXPECT_EQ(bus.unclaimed_accesses(), 5u);

    Bus empty("empty");
    uint8_t v = 0;
    EXPECT_FALSE(empty.read(0, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(v, 0xff);
    EXPECT_FALSE(empty.write(0, std::span<const uint8_t>(&w, 1)));
}

TEST(BusTest, RemoveUnroutesAndFreesTheRange) {
    Bus bus("io");
    RecordingDevice a, b;
    ASSERT_TRUE(bus.add(0x60, 1, &a).has_value());
    bus.remove(0x60);
    uint8_t v = 0;
    EXPECT_FALSE(bus.read(0x60, std::span<uint8_t>(&v, 1)));
    EXPECT_TRUE(bus.add(0x60, 1, &b).has_value());
    EXPECT_TRUE(bus.read(0x60, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(b.reads, 1);
    bus.remove(0x1234);  // unknown base: no effect
    EXPECT_TRUE(bus.read(0x60, std::span<uint8_t>(&v, 1)));
}

}  // namespace
}  // namespace kvmsandbox
