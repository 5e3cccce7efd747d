#include "devices/i8042.h"

#include <gtest/gtest.h>

#include <vector>

#include "arch/x86/layout.h"
#include "devices/bus.h"

namespace kvmsandbox {
namespace {

class FakeIrq : public IrqLine {
  public:
    void set_level(bool asserted) override { levels.push_back(asserted); }
    bool level() const { return !levels.empty() && levels.back(); }
    std::vector<bool> levels;
};

constexpr uint8_t kObf = 0x01, kIbf = 0x02, kCmdFlag = 0x08, kAuxData = 0x20;

class I8042Test : public ::testing::Test {
  protected:
    I8042Test() : kbc([this] { ++resets; }, &kbd_irq, &aux_irq) {}

    uint8_t status() {
        uint8_t v = 0;
        kbc.command_port().read(0, std::span<uint8_t>(&v, 1));
        return v;
    }
    uint8_t data() {
        uint8_t v = 0;
        kbc.data_port().read(0, std::span<uint8_t>(&v, 1));
        return v;
    }
    void cmd(uint8_t v) { kbc.command_port().write(0, std::span<const uint8_t>(&v, 1)); }
    void put(uint8_t v) { kbc.data_port().write(0, std::span<const uint8_t>(&v, 1)); }
    // Reads everything queued, the way Linux's i8042_flush does.
    std::vector<uint8_t> drain() {
        std::vector<uint8_t> r;
        while (status() & kObf) r.push_back(data());
        return r;
    }

    int resets = 0;
    FakeIrq kbd_irq, aux_irq;
    I8042 kbc;
};

TEST_F(I8042Test, ResetCommandTriggersCallback) {
    cmd(0xfe);
    EXPECT_EQ(resets, 1);
    cmd(0xff);  // pulses no line (bit 0 set)
    EXPECT_EQ(resets, 1);
    cmd(0xf0);  // pulses all four lines, reset among them
    EXPECT_EQ(resets, 2);
}

TEST_F(I8042Test, OutputPortResetBit) {
    cmd(0xd0);
    EXPECT_EQ(data() & 0x01, 0x01);  // reset line deasserted
    cmd(0xd1);
    put(0x03);
    EXPECT_EQ(resets, 0);
    cmd(0xd1);
    put(0x02);
    EXPECT_EQ(resets, 1);
}

TEST_F(I8042Test, SelfTestReplies55) {
    EXPECT_EQ(status() & (kObf | kIbf), 0);
    cmd(0xaa);
    EXPECT_EQ(status() & kObf, kObf);
    EXPECT_EQ(status() & kCmdFlag, kCmdFlag);
    EXPECT_EQ(data(), 0x55);
    EXPECT_EQ(status() & kObf, 0);
    cmd(0xab);
    EXPECT_EQ(drain(), std::vector<uint8_t>{0x00});
    cmd(0xa9);
    EXPECT_EQ(drain(), std::vector<uint8_t>{0x00});
}

TEST_F(I8042Test, InputBufferNeverFull) {
    // kb_wait() in Linux's reboot path spins on IBF.
    for (uint8_t c : {0xaa, 0x20, 0xd4}) {
        cmd(c);
        EXPECT_EQ(status() & kIbf, 0);
    }
}

TEST_F(I8042Test, CommandByteReadWrite) {
    cmd(0x20);
    EXPECT_EQ(data(), 0x47);
    cmd(0x60);
    put(0x30);
    cmd(0x20);
    EXPECT_EQ(data(), 0x30);
    EXPECT_EQ(status() & 0x04, 0);  // system flag follows the command byte
}

TEST_F(I8042Test, PortEnableDisableBits) {
    cmd(0xa7);
    cmd(0x20);
    EXPECT_EQ(data() & 0x20, 0x20);
    cmd(0xa8);
    cmd(0x20);
    EXPECT_EQ(data() & 0x20, 0x00);
    cmd(0xad);
    cmd(0x20);
    EXPECT_EQ(data() & 0x10, 0x10);
    cmd(0xae);
    cmd(0x20);
    EXPECT_EQ(data() & 0x10, 0x00);
}

TEST_F(I8042Test, KeyboardCommands) {
    put(0xff);
    EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xaa}));
    put(0xf2);
    EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xab, 0x83}));
    put(0xed);  // set LEDs, then its parameter
    put(0x07);
    EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xfa}));
    put(0xf0);  // get scancode set
    put(0x00);
    EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xfa, 0x02}));
    put(0xf4);
    EXPECT_EQ(drain(), std::vector<uint8_t>{0xfa});
    put(0xee);
    EXPECT_EQ(drain(), std::vector<uint8_t>{0xee});
}

TEST_F(I8042Test, AuxLoopbackAndAbsentMouse) {
    cmd(0xd3);
    put(0x5a);
    EXPECT_EQ(status() & (kObf | kAuxData), kObf | kAuxData);
    EXPECT_EQ(data(), 0x5a);
    cmd(0xd2);  // keyboard loopback
    put(0x12);
    EXPECT_EQ(status() & (kObf | kAuxData), kObf);
    EXPECT_EQ(data(), 0x12);
    cmd(0xd4);  // byte to the mouse: nobody answers but the controller
    put(0xff);
    EXPECT_EQ(status() & kAuxData, kAuxData);
    EXPECT_EQ(data(), 0xfe);
}

TEST_F(I8042Test, EmptyReadReturnsLastByte) {
    cmd(0xaa);
    EXPECT_EQ(data(), 0x55);
    EXPECT_EQ(data(), 0x55);
}

TEST_F(I8042Test, KeyboardIrqFollowsOutputBuffer) {
    put(0xff);
    EXPECT_TRUE(kbd_irq.level());
    EXPECT_TRUE(aux_irq.levels.empty());
    EXPECT_EQ(data(), 0xfa);
    // The second byte arrives as a new edge.
    EXPECT_EQ(kbd_irq.levels, (std::vector<bool>{true, false, true}));
    EXPECT_EQ(data(), 0xaa);
    EXPECT_FALSE(kbd_irq.level());

    cmd(0xd3);
    put(0x01);
    EXPECT_TRUE(aux_irq.level());
    EXPECT_FALSE(kbd_irq.level());
    data();
    EXPECT_FALSE(aux_irq.level());
}

TEST_F(I8042Test, NoIrqWhenDisabledInCommandByte) {
    cmd(0x60);
    put(0x44);  // interrupts off
    put(0xff);
    EXPECT_FALSE(kbd_irq.level());
    EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xaa}));
    EXPECT_TRUE(kbd_irq.levels.empty());
}

TEST(I8042NoIrq, WorksWithoutIrqLinesOnABus) {
    int resets = 0;
    I8042 kbc([&] { ++resets; });
    Bus io("io");
    ASSERT_TRUE(io.add(x86::kI8042DataPort, 1, &kbc.data_port()).has_value());
    ASSERT_TRUE(io.add(x86::kI8042CmdPort, 1, &kbc.command_port()).has_value());
    uint8_t v = 0xaa;
    io.write(x86::kI8042CmdPort, std::span<const uint8_t>(&v, 1));
    io.read(x86::kI8042DataPort, std::span<uint8_t>(&v, 1));
    EXPECT_EQ(v, 0x55);
    v = 0xfe;
    io.write(x86::kI8042CmdPort, std::span<const uint8_t>(&v, 1));
    EXPECT_EQ(resets, 1);
}

}  // namespace
}  // namespace kvmsandbox
