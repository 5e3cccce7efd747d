// The PC keyboard controller (8042), with a keyboard that never types and no
// mouse. It exists so Linux's i8042/atkbd probes finish quickly and so that
// `reboot=k` (command 0xFE to port 0x64) resets the machine.
//
// Registration: the controller exposes two BusDevice adaptors, each added on
// the I/O bus with length 1:
//   bus.add(x86::kI8042DataPort, 1, &i8042.data_port());     // 0x60
//   bus.add(x86::kI8042CmdPort, 1, &i8042.command_port());   // 0x64
// Port 0x61 (speaker/NMI status) in between is not ours: KVM's in-kernel PIT
// handles it.
//
// Interrupts are optional: with kbd_irq (IRQ 1) / aux_irq (IRQ 12) set, the
// line is high while the byte in the output buffer belongs to that port and
// the command byte enables its interrupt. Without them Linux still works by
// polling, but waits for timeouts during probing. The mouse port answers
// every byte sent to it (command 0xD4) with 0xFE ("no device").
//
// Locking: one mutex guards the state. IrqLine::set_level is called with it
// held (IrqLine implementations must not call back into this device);
// on_reset is called without it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/irq_line.h"

namespace kvmsandbox {

class I8042 {
  public:
    // on_reset: the guest pulsed the CPU reset line (command 0xFE, any
    // 0xF0-0xFF pulse with bit 0 clear, or output port bit 0 written as 0).
    explicit I8042(std::function<void()> on_reset, IrqLine* kbd_irq = nullptr,
                   IrqLine* aux_irq = nullptr);

    I8042(const I8042&) = delete;
    I8042& operator=(const I8042&) = delete;

    BusDevice& data_port() { return data_port_; }        // 0x60: data in/out
    BusDevice& command_port() { return command_port_; }  // 0x64: status / command

  private:
    class Port : public BusDevice {
      public:
        Port(I8042& owner, bool command) : owner_(owner), command_(command) {}
        void read(uint64_t offset, std::span<uint8_t> data) override;
        void write(uint64_t offset, std::span<const uint8_t> data) override;

      private:
        I8042& owner_;
        bool command_;
    };

    // What the next byte written to the data port means.
    enum class Pending : uint8_t {
        kKeyboard,       // a keyboard command (the default)
        kKeyboardParam,  // the parameter of keyboard command kbd_cmd_
        kCommandByte,    // after 0x60
        kOutputPort,     // after 0xD1
        kKbdOutput,      // after 0xD2: echo as keyboard data
        kAuxOutput,      // after 0xD3: echo as mouse data
        kAuxDevice,      // after 0xD4: byte for the (absent) mouse
    };

    struct OutByte {
        uint8_t value;
        bool aux;
    };

    uint8_t read_status_locked() const;
    uint8_t read_data_locked();
    // Return true when the write pulses the reset line.
    bool write_command_locked(uint8_t cmd);
    bool write_data_locked(uint8_t v);
    void keyboard_command_locked(uint8_t v);
    void push_locked(uint8_t value, bool aux);
    // `popped`: the guest just took a byte; a following byte must show up as
    // a new edge, as the 8042 drops OBF between bytes.
    void update_irqs_locked(bool popped);

    std::function<void()> on_reset_;
    IrqLine* kbd_irq_;
    IrqLine* aux_irq_;
    Port data_port_{*this, false};
    Port command_port_{*this, true};

    std::mutex mu_;
    uint8_t command_byte_;
    uint8_t output_port_;
    uint8_t last_data_ = 0;          // what a data read returns when nothing is queued
    bool last_was_command_ = false;  // status bit 3: last write went to 0x64
    Pending pending_ = Pending::kKeyboard;
    uint8_t kbd_cmd_ = 0;

    static constexpr size_t kQueueSize = 16;
    std::array<OutByte, kQueueSize> queue_{};
    size_t q_head_ = 0;
    size_t q_count_ = 0;

    bool kbd_level_ = false;
    bool aux_level_ = false;
};

}  // namespace kvmsandbox
