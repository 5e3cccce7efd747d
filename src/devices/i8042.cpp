#include "devices/i8042.h"

namespace kvmsandbox {

namespace {

// Status register.
constexpr uint8_t kStsObf = 0x01;      // output buffer full
constexpr uint8_t kStsSys = 0x04;      // system flag (mirrors command byte bit 2)
constexpr uint8_t kStsCmd = 0x08;      // last write was a command
constexpr uint8_t kStsUnlock = 0x10;   // keyboard not inhibited
constexpr uint8_t kStsAuxData = 0x20;  // output buffer holds mouse data

// Command byte ("CTR" in Linux).
constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrAuxInt = 0x02;
constexpr uint8_t kCtrSys = 0x04;
constexpr uint8_t kCtrKbdDis = 0x10;
constexpr uint8_t kCtrAuxDis = 0x20;
constexpr uint8_t kCtrXlate = 0x40;

// Output port: bit 0 is the CPU reset line (active low), bit 1 the A20 gate.
constexpr uint8_t kOutPortDefault = 0x03;

constexpr uint8_t kAck = 0xfa;
constexpr uint8_t kNoDevice = 0xfe;
constexpr uint8_t kSelfTestOk = 0x55;
constexpr uint8_t kBatOk = 0xaa;

}  // namespace

I8042::I8042(std::function<void()> on_reset, IrqLine* kbd_irq, IrqLine* aux_irq)
    : on_reset_(std::move(on_reset)),
      kbd_irq_(kbd_irq),
      aux_irq_(aux_irq),
      // What a BIOS leaves behind: both interrupts on, system flag set,
      // scancode translation on.
      command_byte_(kCtrKbdInt | kCtrAuxInt | kCtrSys | kCtrXlate),
      output_port_(kOutPortDefault) {}

void I8042::Port::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(owner_.mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        if (offset + i != 0) {
            data[i] = 0xff;  // beyond our one-byte port
            continue;
        }
        data[i] = command_ ? owner_.read_status_locked() : owner_.read_data_locked();
    }
}

void I8042::Port::write(uint64_t offset, std::span<const uint8_t> data) {
    bool reset = false;
    {
        std::lock_guard lock(owner_.mu_);
        for (size_t i = 0; i < data.size(); ++i) {
            if (offset + i != 0) continue;
            reset |=
                command_ ? owner_.write_command_locked(data[i]) : owner_.write_data_locked(data[i]);
        }
    }
    if (reset && owner_.on_reset_) owner_.on_reset_();
}

uint8_t I8042::read_status_locked() const {
    uint8_t s = kStsUnlock;
    if (q_count_ > 0) {
        s |= kStsObf;
        if (queue_[q_head_].aux) s |= kStsAuxData;
    }
    if (command_byte_ & kCtrSys) s |= kStsSys;
    if (last_was_command_) s |= kStsCmd;
    // IBF (bit 1) is never set: input is consumed at once, so Linux's
    // kb_wait() before the reset command never spins.
    return s;
}

uint8_t I8042::read_data_locked() {
    if (q_count_ == 0) return last_data_;  // stale byte, as the real latch
    last_data_ = queue_[q_head_].value;
    q_head_ = (q_head_ + 1) % kQueueSize;
    --q_count_;
    update_irqs_locked(true);
    return last_data_;
}

bool I8042::write_command_locked(uint8_t cmd) {
    last_was_command_ = true;
    // A new command abandons a half-written one.
    pending_ = Pending::kKeyboard;
    switch (cmd) {
        case 0x20:  // read command byte
            push_locked(command_byte_, false);
            break;
        case 0x60:  // write command byte
            pending_ = Pending::kCommandByte;
            break;
        case 0xa7:  // disable mouse port
            command_byte_ |= kCtrAuxDis;
            break;
        case 0xa8:  // enable mouse port
            command_byte_ &= ~kCtrAuxDis;
            break;
        case 0xa9:  // mouse port test: 0 = ok
            push_locked(0x00, false);
            break;
        case 0xaa:  // controller self test
            command_byte_ |= kCtrSys;
            push_locked(kSelfTestOk, false);
            break;
        case 0xab:  // keyboard port test: 0 = ok
            push_locked(0x00, false);
            break;
        case 0xad:  // disable keyboard
            command_byte_ |= kCtrKbdDis;
            break;
        case 0xae:  // enable keyboard
            command_byte_ &= ~kCtrKbdDis;
            break;
        case 0xc0:  // read input port
            push_locked(0x00, false);
            break;
        case 0xd0:  // read output port
            push_locked(output_port_, false);
            break;
        case 0xd1:
            pending_ = Pending::kOutputPort;
            break;
        case 0xd2:
            pending_ = Pending::kKbdOutput;
            break;
        case 0xd3:
            pending_ = Pending::kAuxOutput;
            break;
        case 0xd4:
            pending_ = Pending::kAuxDevice;
            break;
        case 0xe0:  // read test inputs
            push_locked(0x00, false);
            break;
        default:
            // 0xF0-0xFF pulse output port lines whose bit is 0 in the low
            // nibble; bit 0 is reset. 0xFE is what reboot=k sends.
            if (cmd >= 0xf0 && !(cmd & 0x01)) return true;
            break;  // unknown commands are ignored, as most controllers do
    }
    update_irqs_locked(false);
    return false;
}

bool I8042::write_data_locked(uint8_t v) {
    last_was_command_ = false;
    Pending p = pending_;
    pending_ = Pending::kKeyboard;
    bool reset = false;
    switch (p) {
        case Pending::kKeyboard:
            keyboard_command_locked(v);
            break;
        case Pending::kKeyboardParam:
            push_locked(kAck, false);
            // "Get scancode set" (F0 00) answers with the set in use.
            if (kbd_cmd_ == 0xf0 && v == 0) push_locked(0x02, false);
            break;
        case Pending::kCommandByte:
            command_byte_ = v;
            break;
        case Pending::kOutputPort:
            output_port_ = v;
            reset = !(v & 0x01);
            break;
        case Pending::kKbdOutput:
            push_locked(v, false);
            break;
        case Pending::kAuxOutput:
            push_locked(v, true);
            break;
        case Pending::kAuxDevice:
            push_locked(kNoDevice, true);
            break;
    }
    update_irqs_locked(false);
    return reset;
}

void I8042::keyboard_command_locked(uint8_t v) {
    switch (v) {
        case 0xff:  // reset: ack, then basic assurance test passed
            push_locked(kAck, false);
            push_locked(kBatOk, false);
            break;
        case 0xf2:  // identify: an MF2 AT keyboard
            push_locked(kAck, false);
            push_locked(0xab, false);
            push_locked(0x83, false);
            break;
        case 0xee:  // echo
            push_locked(0xee, false);
            break;
        case 0xed:  // set LEDs
        case 0xf0:  // get/set scancode set
        case 0xf3:  // set typematic rate
            push_locked(kAck, false);
            kbd_cmd_ = v;
            pending_ = Pending::kKeyboardParam;
            break;
        default:  // enable, disable, defaults, ...: nothing to do but ack
            push_locked(kAck, false);
            break;
    }
}

void I8042::push_locked(uint8_t value, bool aux) {
    if (q_count_ == kQueueSize) return;  // a real 8042 holds one byte; drop
    queue_[(q_head_ + q_count_) % kQueueSize] = OutByte{value, aux};
    ++q_count_;
}

void I8042::update_irqs_locked(bool popped) {
    bool has = q_count_ > 0;
    bool aux = has && queue_[q_head_].aux;
    bool kbd_level = has && !aux && (command_byte_ & kCtrKbdInt);
    bool aux_level = aux && (command_byte_ & kCtrAuxInt);
    auto apply = [popped](IrqLine* line, bool& cur, bool level) {
        if (!line) return;
        // ISA IRQs are edge-triggered at the IOAPIC: a byte that follows the
        // one just read must produce a fresh rising edge.
        if (popped && cur && level) {
            line->set_level(false);
            line->set_level(true);
        } else if (cur != level) {
            line->set_level(level);
        }
        cur = level;
    };
    apply(kbd_irq_, kbd_level_, kbd_level);
    apply(aux_irq_, aux_level_, aux_level);
}

}  // namespace kvmsandbox
