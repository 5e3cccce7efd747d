#include "devices/serial8250.h"

#include <algorithm>

namespace kvmsandbox {

namespace {

// Register offsets.
constexpr uint64_t kRbrThrDll = 0;
constexpr uint64_t kIerDlm = 1;
constexpr uint64_t kIirFcr = 2;
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerRdi = 0x01;   // received data available
constexpr uint8_t kIerThri = 0x02;  // transmitter holding register empty
constexpr uint8_t kIerRlsi = 0x04;  // receiver line status
constexpr uint8_t kIerMsi = 0x08;   // modem status

constexpr uint8_t kIirNoInt = 0x01;
constexpr uint8_t kIirMsi = 0x00;
constexpr uint8_t kIirThri = 0x02;
constexpr uint8_t kIirRdi = 0x04;
constexpr uint8_t kIirRlsi = 0x06;
constexpr uint8_t kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;
constexpr uint8_t kFcrKeep = 0xc9;  // enable, DMA mode, trigger level

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

constexpr uint8_t kLsrDr = 0x01;
constexpr uint8_t kLsrOe = 0x02;
constexpr uint8_t kLsrErrors = 0x1e;  // OE, PE, FE, BI
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

constexpr uint8_t kMsrDcts = 0x01;
constexpr uint8_t kMsrDdsr = 0x02;
constexpr uint8_t kMsrTeri = 0x04;
constexpr uint8_t kMsrDdcd = 0x08;
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;

}  // namespace

Serial8250::Serial8250(IrqLine& irq, OutputFn output) : irq_(irq), output_(std::move(output)) {}

void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
    bool drained = false;
    {
        std::lock_guard lock(mu_);
        for (size_t i = 0; i < data.size(); ++i) {
            uint64_t reg = offset + i;
            data[i] = reg < kPortCount ? read_reg_locked(reg, drained) : 0xff;
        }
        update_irq_locked();
    }
    if (drained && on_rx_drained_) on_rx_drained_();
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
    bool drained = false;
    {
        // tx_mu_ is held across the output call so bytes from concurrent
        // writers reach the output in THR-write order; mu_ is not, so reads
        // and enqueue_input() proceed while the output blocks.
        std::lock_guard tx_lock(tx_mu_);
        bool tx = false;
        uint8_t tx_byte = 0;
        {
            std::lock_guard lock(mu_);
            for (size_t i = 0; i < data.size(); ++i) {
                uint64_t reg = offset + i;
                if (reg < kPortCount) write_reg_locked(reg, data[i], tx, tx_byte, drained);
            }
            update_irq_locked();
        }
        // Only offset 0 is THR, so one access transmits at most one byte.
        if (tx) {
            bytes_tx_.fetch_add(1, std::memory_order_relaxed);
            if (output_) output_(std::span<const uint8_t>(&tx_byte, 1));
        }
    }
    if (drained && on_rx_drained_) on_rx_drained_();
}

uint8_t Serial8250::read_reg_locked(uint64_t reg, bool& drained) {
    bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kRbrThrDll: {
            if (dlab) return static_cast<uint8_t>(divisor_);
            if (rx_count_ == 0) return 0;
            uint8_t b = rx_[rx_head_];
            rx_head_ = (rx_head_ + 1) % kRxFifoCapacity;
            if (--rx_count_ == 0) drained = true;
            return b;
        }
        case kIerDlm:
            return dlab ? static_cast<uint8_t>(divisor_ >> 8) : ier_;
        case kIirFcr: {
            // Still IIR with DLAB set: Linux's 16550A probe relies on that
            // (it reads "EFR" at this offset and expects IIR, not 0).
            uint8_t id = interrupt_id_locked();
            // Reading IIR acknowledges a THRE interrupt it reports.
            if (id == kIirThri) thre_pending_ = false;
            return id | ((fcr_ & kFcrEnable) ? kIirFifoEnabled : 0);
        }
        case kLcr:
            return lcr_;
        case kMcr:
            return mcr_;
        case kLsr: {
            uint8_t v = kLsrThre | kLsrTemt | lsr_errors_ | (rx_count_ ? kLsrDr : 0);
            lsr_errors_ = 0;
            return v;
        }
        case kMsr: {
            uint8_t v = modem_status_locked() | msr_delta_;
            msr_delta_ = 0;
            return v;
        }
        case kScr:
            return scr_;
    }
    return 0xff;
}

void Serial8250::write_reg_locked(uint64_t reg, uint8_t v, bool& tx, uint8_t& tx_byte,
                                  bool& drained) {
    bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kRbrThrDll:
            if (dlab) {
                divisor_ = static_cast<uint16_t>((divisor_ & 0xff00) | v);
                return;
            }
            // The byte leaves at once, so THR is empty again: a THR write
            // acknowledges the old THRE interrupt and raises a new one.
            thre_pending_ = true;
            if (mcr_ & kMcrLoop) {
                // Loopback: the transmitter feeds the receiver, not the line.
                if (!rx_push_locked(v)) lsr_errors_ |= kLsrOe;
            } else {
                tx = true;
                tx_byte = v;
            }
            return;
        case kIerDlm:
            if (dlab) {
                divisor_ = static_cast<uint16_t>((divisor_ & 0x00ff) | (v << 8));
                return;
            }
            // A 16550 raises THRE whenever THRI goes from off to on while the
            // transmitter is empty (it always is here); Linux checks this at
            // startup and otherwise flags the port UART_BUG_THRE.
            if ((v & kIerThri) && !(ier_ & kIerThri)) thre_pending_ = true;
            if (!(v & kIerThri)) thre_pending_ = false;
            ier_ = v & 0x0f;
            return;
        case kIirFcr:
            fcr_ = v & kFcrKeep;
            if ((v & kFcrClearRx) && rx_count_ > 0) {
                rx_head_ = 0;
                rx_count_ = 0;
                drained = true;
            }
            // Clearing the TX FIFO is a no-op: it never holds anything.
            return;
        case kLcr:
            lcr_ = v;
            return;
        case kMcr:
            set_mcr_locked(v & kMcrMask);
            return;
        case kLsr:
        case kMsr:
            return;  // read-only (factory test on real parts)
        case kScr:
            scr_ = v;
            return;
    }
}

uint8_t Serial8250::interrupt_id_locked() const {
    if ((ier_ & kIerRlsi) && (lsr_errors_ & kLsrErrors)) return kIirRlsi;
    if ((ier_ & kIerRdi) && rx_count_ > 0) return kIirRdi;
    if ((ier_ & kIerThri) && thre_pending_) return kIirThri;
    if ((ier_ & kIerMsi) && msr_delta_) return kIirMsi;
    return kIirNoInt;
}

uint8_t Serial8250::modem_status_locked() const {
    // No modem: the line is always up. In loopback the modem outputs are
    // wired back to the inputs (DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD);
    // Linux's autoconfig checks exactly that before calling it a UART.
    if (!(mcr_ & kMcrLoop)) return kMsrDcd | kMsrDsr | kMsrCts;
    uint8_t v = 0;
    if (mcr_ & kMcrDtr) v |= kMsrDsr;
    if (mcr_ & kMcrRts) v |= kMsrCts;
    if (mcr_ & kMcrOut1) v |= kMsrRi;
    if (mcr_ & kMcrOut2) v |= kMsrDcd;
    return v;
}

void Serial8250::set_mcr_locked(uint8_t v) {
    uint8_t before = modem_status_locked();
    mcr_ = v;
    uint8_t after = modem_status_locked();
    uint8_t changed = before ^ after;
    if (changed & kMsrCts) msr_delta_ |= kMsrDcts;
    if (changed & kMsrDsr) msr_delta_ |= kMsrDdsr;
    if (changed & kMsrDcd) msr_delta_ |= kMsrDdcd;
    if ((before & kMsrRi) && !(after & kMsrRi)) msr_delta_ |= kMsrTeri;  // trailing edge only
}

bool Serial8250::rx_push_locked(uint8_t b) {
    if (rx_count_ == kRxFifoCapacity) return false;
    rx_[(rx_head_ + rx_count_) % kRxFifoCapacity] = b;
    ++rx_count_;
    return true;
}

void Serial8250::update_irq_locked() {
    // On a PC the UART's interrupt output reaches the PIC only through a gate
    // driven by OUT2; Linux sets OUT2 when it wants interrupts.
    bool level = interrupt_id_locked() != kIirNoInt && (mcr_ & kMcrOut2);
    if (level == irq_level_) return;
    irq_level_ = level;
    irq_.set_level(level);
}

size_t Serial8250::enqueue_input(std::span<const uint8_t> bytes) {
    std::lock_guard lock(mu_);
    size_t n = std::min(bytes.size(), kRxFifoCapacity - rx_count_);
    for (size_t i = 0; i < n; ++i) rx_push_locked(bytes[i]);
    bytes_rx_.fetch_add(n, std::memory_order_relaxed);
    update_irq_locked();
    return n;
}

size_t Serial8250::rx_free() const {
    std::lock_guard lock(mu_);
    return kRxFifoCapacity - rx_count_;
}

}  // namespace kvmsandbox
