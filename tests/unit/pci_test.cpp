#include "devices/pci.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace kvmsandbox {
namespace {

constexpr uint64_t kWindow = 0xe0000000;
constexpr uint64_t kWindowEnd = 0xf0000000;

// A BAR region that answers reads with a constant and counts accesses.
class Region : public BusDevice {
  public:
    explicit Region(uint8_t fill) : fill(fill) {}
    void read(uint64_t, std::span<uint8_t> data) override {
        ++reads;
        for (auto& b : data) b = fill;
    }
    void write(uint64_t, std::span<const uint8_t>) override { ++writes; }
    uint8_t fill;
    int reads = 0, writes = 0;
};

class TestDevice : public PciDevice {
  public:
    explicit TestDevice(uint8_t fill = 0xab)
        : PciDevice(PciIds{0x1234, 0x5678, 0x020000, 3, 0x1111, 0x2222}), region(fill) {
        add_memory_bar(0, 0x1000, region);
        const uint8_t body[] = {0x11, 0x22, 0x33, 0x44};
        const uint8_t mask[] = {0x00, 0xff, 0x0f, 0x00};
        cap = add_capability(0x09, body, mask);
        const uint8_t body2[] = {0x55, 0x66};
        cap2 = add_capability(0x05, body2);
    }
    ~TestDevice() override { unmap_bars(); }
    void bar_moved(unsigned bar, std::optional<uint64_t> base) override {
        moves.push_back({bar, base});
    }
    Region region;
    uint8_t cap = 0, cap2 = 0;
    std::vector<std::pair<unsigned, std::optional<uint64_t>>> moves;
};

TEST(PciDeviceTest, IdsAndHeader) {
    TestDevice d;
    EXPECT_EQ(d.config_read(pci::kVendorId, 2), 0x1234u);
    EXPECT_EQ(d.config_read(pci::kDeviceId, 2), 0x5678u);
    EXPECT_EQ(d.config_read(pci::kVendorId, 4), 0x56781234u);
    EXPECT_EQ(d.config_read(pci::kRevisionId, 4), 0x02000003u);  // class 02 00 00, rev 3
    EXPECT_EQ(d.config_read(pci::kHeaderType, 1), 0u);
    EXPECT_EQ(d.config_read(pci::kSubsystemVendorId, 4), 0x22221111u);
}

TEST(PciDeviceTest, ReadOnlyFieldsStay) {
    TestDevice d;
    for (uint16_t off : {0x00, 0x08, 0x0c, 0x2c, 0x30, 0x34}) d.config_write(off, 4, 0xffffffff);
    d.config_write(pci::kHeaderType, 1, 0x80);
    d.config_write(pci::kStatus, 2, 0xffff);
    EXPECT_EQ(d.config_read(pci::kVendorId, 4), 0x56781234u);
    EXPECT_EQ(d.config_read(pci::kRevisionId, 4), 0x02000003u);
    EXPECT_EQ(d.config_read(pci::kHeaderType, 1), 0u);
    EXPECT_EQ(d.config_read(pci::kSubsystemVendorId, 4), 0x22221111u);
    EXPECT_EQ(d.config_read(0x30, 4), 0u);  // no expansion ROM
    EXPECT_EQ(d.config_read(pci::kCapabilityPointer, 1), d.cap);
    EXPECT_EQ(d.config_read(pci::kStatus, 2), pci::kStatusCapList);
    // Cache line size is the one writable byte in 0x0c.
    EXPECT_EQ(d.config_read(pci::kCacheLineSize, 4), 0x000000ffu);
}

TEST(PciDeviceTest, CommandWritesMasked) {
    TestDevice d;
    d.config_write(pci::kCommand, 2, 0xffff);
    EXPECT_EQ(d.config_read(pci::kCommand, 2), 0x0546u);  // MEM|MASTER|PARITY|SERR|INTX_DIS
    d.config_write(pci::kCommand, 2, 0);
    EXPECT_EQ(d.config_read(pci::kCommand, 2), 0u);
}

TEST(PciDeviceTest, BarSizing) {
    TestDevice d;
    d.config_write(pci::kBar0, 4, 0xffffffff);
    EXPECT_EQ(d.config_read(pci::kBar0, 4), 0xfffff000u);  // 4 KiB, 32-bit memory
    for (unsigned i = 1; i < 6; ++i) {
        d.config_write(pci::kBar0 + 4 * i, 4, 0xffffffff);
        EXPECT_EQ(d.config_read(pci::kBar0 + 4 * i, 4), 0u) << i;  // unimplemented
    }
    // Unaligned addresses lose their low bits; type bits stay 0.
    d.config_write(pci::kBar0, 4, 0xe0001234);
    EXPECT_EQ(d.config_read(pci::kBar0, 4), 0xe0001000u);
    // Byte writes are masked the same way.
    d.config_write(pci::kBar0, 1, 0xff);
    EXPECT_EQ(d.config_read(pci::kBar0, 4), 0xe0001000u);
    d.config_write(pci::kBar0 + 1, 1, 0xff);
    EXPECT_EQ(d.config_read(pci::kBar0, 4), 0xe000f000u);
}

TEST(PciDeviceTest, CapabilityList) {
    TestDevice d;
    EXPECT_EQ(d.cap, pci::kFirstCapability);
    EXPECT_EQ(d.config_read(d.cap, 1), 0x09u);
    EXPECT_EQ(d.config_read(d.cap + 1, 1), d.cap2);
    EXPECT_EQ(d.config_read(d.cap2, 1), 0x05u);
    EXPECT_EQ(d.config_read(d.cap2 + 1, 1), 0u);  // end of list
    EXPECT_EQ(d.cap2 % 4, 0);
    // Only the bits in the capability's writable mask change.
    d.config_write(d.cap, 4, 0xffffffff);
    d.config_write(d.cap + 4, 2, 0xffff);
    EXPECT_EQ(d.config_read(d.cap, 4), 0xff110000u | 0x0009u | (uint32_t{d.cap2} << 8));
    EXPECT_EQ(d.config_read(d.cap + 4, 2), 0x443fu);
}

TEST(PciDeviceTest, InvalidAccessesRejected) {
    TestDevice d;
    EXPECT_EQ(d.config_read(0xfe, 4), 0xffffffffu);
    EXPECT_EQ(d.config_read(0x100, 1), 0xffffffffu);
    EXPECT_EQ(d.config_read(0x00, 3), 0xffffffffu);
    d.config_write(0xfe, 4, 0);  // dropped, no crash
}

TEST(PciDeviceTest, BarMappingFollowsDecodeAndAddress) {
    Bus mmio("MMIO");
    BusBarMapper mapper(mmio, kWindow, kWindowEnd);
    TestDevice d(0x5a);
    d.set_bar_mapper(&mapper);
    uint8_t v = 0;

    d.config_write(pci::kBar0, 4, kWindow + 0x1000);
    EXPECT_FALSE(d.bar_address(0));  // decoding still off
    EXPECT_FALSE(mmio.read(kWindow + 0x1000, std::span<uint8_t>(&v, 1)));

    d.config_write(pci::kCommand, 2, pci::kCommandMemory);
    ASSERT_EQ(d.bar_address(0), kWindow + 0x1000);
    EXPECT_TRUE(mmio.read(kWindow + 0x1ffc, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(v, 0x5a);

    // Move the BAR while decoding: old range goes away, new one works.
    d.config_write(pci::kBar0, 4, kWindow + 0x4000);
    EXPECT_EQ(d.bar_address(0), kWindow + 0x4000);
    EXPECT_FALSE(mmio.read(kWindow + 0x1000, std::span<uint8_t>(&v, 1)));
    EXPECT_TRUE(mmio.read(kWindow + 0x4000, std::span<uint8_t>(&v, 1)));

    // Sizing with decoding on: all ones is outside the window -> unmapped.
    d.config_write(pci::kBar0, 4, 0xffffffff);
    EXPECT_FALSE(d.bar_address(0));
    d.config_write(pci::kBar0, 4, kWindow + 0x4000);
    EXPECT_EQ(d.bar_address(0), kWindow + 0x4000);

    d.config_write(pci::kCommand, 2, 0);
    EXPECT_FALSE(d.bar_address(0));
    EXPECT_FALSE(mmio.read(kWindow + 0x4000, std::span<uint8_t>(&v, 1)));

    ASSERT_GE(d.moves.size(), 5u);
    EXPECT_EQ(d.moves.back(), std::make_pair(0u, std::optional<uint64_t>()));
}

TEST(PciDeviceTest, BarOverAnotherDeviceStaysUnmapped) {
    Bus mmio("MMIO");
    BusBarMapper mapper(mmio, kWindow, kWindowEnd);
    Region other(0x77);
    ASSERT_TRUE(mmio.add(kWindow + 0x8800, 0x100, &other).has_value());
    TestDevice d(0x5a);
    d.set_bar_mapper(&mapper);
    d.config_write(pci::kCommand, 2, pci::kCommandMemory);
    d.config_write(pci::kBar0, 4, kWindow + 0x8000);  // overlaps `other`
    EXPECT_FALSE(d.bar_address(0));
    uint8_t v = 0;
    EXPECT_TRUE(mmio.read(kWindow + 0x8800, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(v, 0x77);  // the other device keeps its range
    EXPECT_EQ(d.region.reads, 0);

    // Outside the window (over RAM, say) is refused too.
    d.config_write(pci::kBar0, 4, 0x10000000);
    EXPECT_FALSE(d.bar_address(0));

    d.config_write(pci::kBar0, 4, kWindow + 0x9000);
    EXPECT_EQ(d.bar_address(0), kWindow + 0x9000);
}

TEST(PciDeviceTest, DestructorUnmaps) {
    Bus mmio("MMIO");
    BusBarMapper mapper(mmio, kWindow, kWindowEnd);
    {
        TestDevice d;
        d.set_bar_mapper(&mapper);
        d.config_write(pci::kBar0, 4, kWindow);
        d.config_write(pci::kCommand, 2, pci::kCommandMemory);
        ASSERT_TRUE(d.bar_address(0));
    }
    uint8_t v = 0;
    EXPECT_FALSE(mmio.read(kWindow, std::span<uint8_t>(&v, 1)));
}

// ---- host bridge / configuration mechanism #1 ------------------------------------

class PciBridgeTest : public ::testing::Test {
  protected:
    PciBridgeTest() : mapper(mmio, kWindow, kWindowEnd), bridge(&mapper, kWindow, kWindowEnd) {
        EXPECT_TRUE(io.add(pci::kConfigAddressPort, PciHostBridge::kPortCount, &bridge));
    }
    void outl(uint16_t port, uint32_t v) {
        uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
        io.write(port, std::span<const uint8_t>(b, 4));
    }
    void outw(uint16_t port, uint16_t v) {
        uint8_t b[2] = {uint8_t(v), uint8_t(v >> 8)};
        io.write(port, std::span<const uint8_t>(b, 2));
    }
    void outb(uint16_t port, uint8_t v) { io.write(port, std::span<const uint8_t>(&v, 1)); }
    uint32_t in(uint16_t port, size_t len) {
        uint8_t b[4] = {};
        io.read(port, std::span<uint8_t>(b, len));
        uint32_t v = 0;
        for (size_t i = 0; i < len; ++i) v |= uint32_t{b[i]} << (8 * i);
        return v;
    }
    static uint32_t addr(uint8_t slot, uint8_t reg, uint8_t fn = 0, uint8_t bus = 0) {
        return 0x80000000u | (uint32_t{bus} << 16) | (uint32_t{slot} << 11) | (uint32_t{fn} << 8) |
               reg;
    }

    Bus io{"I/O port"};
    Bus mmio{"MMIO"};
    BusBarMapper mapper;
    PciHostBridge bridge;
};

TEST_F(PciBridgeTest, HostBridgeAtSlotZero) {
    outl(0xcf8, addr(0, 0));
    EXPECT_EQ(in(0xcfc, 4), (uint32_t{PciHostBridge::kDevice} << 16) | PciHostBridge::kVendor);
    outl(0xcf8, addr(0, 0x08));
    EXPECT_EQ(in(0xcfc, 4) >> 8, 0x060000u);  // host bridge class
}

TEST_F(PciBridgeTest, AddressRegister) {
    outl(0xcf8, 0x80001237);  // low two bits reserved
    EXPECT_EQ(in(0xcf8, 4), 0x80001234u);
    outl(0xcf8, 0x7f000000);  // reserved bits 30:24 read as 0
    EXPECT_EQ(in(0xcf8, 4), 0u);
    // Narrow accesses do not touch the address register.
    outl(0xcf8, 0x80000000);
    outb(0xcfb, 0x01);
    outw(0xcf8, 0x1234);
    EXPECT_EQ(in(0xcf8, 4), 0x80000000u);
}

TEST_F(PciBridgeTest, AbsentDevicesReadAllOnes) {
    outl(0xcf8, addr(5, 0));
    EXPECT_EQ(in(0xcfc, 4), 0xffffffffu);
    EXPECT_EQ(in(0xcfc, 2), 0xffffu);
    EXPECT_EQ(in(0xcfd, 1), 0xffu);
    outl(0xcf8, addr(0, 0, /*fn=*/1));
    EXPECT_EQ(in(0xcfc, 4), 0xffffffffu);
    outl(0xcf8, addr(0, 0, 0, /*bus=*/1));
    EXPECT_EQ(in(0xcfc, 4), 0xffffffffu);
    outl(0xcf8, addr(0, 0) & ~0x80000000u);  // enable bit clear
    EXPECT_EQ(in(0xcfc, 4), 0xffffffffu);
    outl(0xcf8, addr(5, 0x04));
    outl(0xcfc, 0xffffffff);  // dropped
}

TEST_F(PciBridgeTest, ByteAndWordAccessThroughDataWindow) {
    TestDevice d;
    auto slot = bridge.add_device(d);
    ASSERT_TRUE(slot.has_value());
    EXPECT_EQ(*slot, 1);
    outl(0xcf8, addr(1, 0));
    EXPECT_EQ(in(0xcfc, 1), 0x34u);
    EXPECT_EQ(in(0xcfd, 1), 0x12u);
    EXPECT_EQ(in(0xcfe, 2), 0x5678u);
    EXPECT_EQ(in(0xcff, 1), 0x56u);
    EXPECT_EQ(in(0xcfe, 4), 0xffffffffu);  // crosses the dword: refused

    // Interrupt line (0x3c) is writable byte-wise, pin (0x3d) is not.
    outl(0xcf8, addr(1, 0x3c));
    outb(0xcfc, 0x0b);
    outb(0xcfd, 0x07);
    EXPECT_EQ(in(0xcfc, 2), 0x000bu);

    // Word write to the command register through 0xcfc.
    outl(0xcf8, addr(1, 0x04));
    outw(0xcfc, 0xffff);
    EXPECT_EQ(in(0xcfc, 2), 0x0546u);
    // Word write to the status half: read-only.
    outw(0xcfe, 0xffff);
    EXPECT_EQ(in(0xcfe, 2), pci::kStatusCapList);
}

TEST_F(PciBridgeTest, AddDeviceAssignsAndMapsBars) {
    TestDevice a(0x11), b(0x22);
    ASSERT_TRUE(bridge.add_device(a).has_value());
    ASSERT_TRUE(bridge.add_device(b).has_value());
    ASSERT_TRUE(a.bar_address(0));
    ASSERT_TRUE(b.bar_address(0));
    EXPECT_EQ(*a.bar_address(0), kWindow);
    EXPECT_EQ(*b.bar_address(0), kWindow + 0x1000);
    uint8_t v = 0;
    EXPECT_TRUE(mmio.read(kWindow + 0x1010, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(v, 0x22);

    // The guest sizes BAR0 of slot 2 through the ports, as Linux does.
    outl(0xcf8, addr(2, 0x04));
    outw(0xcfc, 0);  // decoding off
    outl(0xcf8, addr(2, 0x10));
    uint32_t orig = in(0xcfc, 4);
    outl(0xcfc, 0xffffffff);
    EXPECT_EQ(in(0xcfc, 4), 0xfffff000u);
    outl(0xcfc, orig);
    outl(0xcf8, addr(2, 0x04));
    outw(0xcfc, pci::kCommandMemory);
    EXPECT_EQ(b.bar_address(0), kWindow + 0x1000);

    // Moving b's BAR over a's is refused: b is left unmapped, a untouched.
    outl(0xcf8, addr(2, 0x10));
    outl(0xcfc, kWindow);
    EXPECT_FALSE(b.bar_address(0));
    EXPECT_TRUE(mmio.read(kWindow, std::span<uint8_t>(&v, 1)));
    EXPECT_EQ(v, 0x11);
}

TEST_F(PciBridgeTest, WindowExhausted) {
    PciHostBridge small(&mapper, 0xe8000000, 0xe8001800);
    TestDevice a, b;
    EXPECT_TRUE(small.add_device(a).has_value());
    EXPECT_FALSE(small.add_device(b).has_value());
}

}  // namespace
}  // namespace kvmsandbox
