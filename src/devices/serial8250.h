// A 16550A UART (the PC's COM1): the guest's console. Register it on the I/O
// bus at x86::kCom1Port with length kPortCount; its interrupt is x86::kCom1Irq.
//
// Transmission is instant: a THR write hands the byte to the output callback
// and the transmitter is empty again at once (LSR.THRE|TEMT always set), so
// the guest never waits on a baud rate. Reception goes through a bounded FIFO
// fed by enqueue_input() from the event loop, which applies backpressure with
// its return value and resumes on the on_rx_drained callback.
//
// Locking: one mutex guards the registers. IrqLine::set_level is called with
// it held (so levels reach the line in the order the state changed); IrqLine
// implementations must therefore never call back into this device. The output
// and on_rx_drained callbacks run without the register lock; output runs under
// a separate transmit mutex so concurrent THR writes reach it in order.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/irq_line.h"

namespace kvmsandbox {

class Serial8250 : public BusDevice {
  public:
    using OutputFn = std::function<void(std::span<const uint8_t>)>;

    static constexpr uint64_t kPortCount = 8;
    static constexpr size_t kRxFifoCapacity = 4096;

    // `output` receives every byte the guest transmits (not in loopback mode);
    // it may block, which stalls the transmitting vCPU: that is the guest's
    // backpressure. It must not call write() on this device.
    Serial8250(IrqLine& irq, OutputFn output);

    Serial8250(const Serial8250&) = delete;
    Serial8250& operator=(const Serial8250&) = delete;

    // BusDevice. A multi-byte access is split into byte accesses at
    // consecutive registers, as an ISA bus does for an 8-bit device.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Appends host input to the RX FIFO; returns how many bytes fit (possibly
    // 0). Thread-safe; called from the event loop.
    size_t enqueue_input(std::span<const uint8_t> bytes);
    size_t rx_free() const;
    bool rx_space() const { return rx_free() > 0; }

    // Called (without the device lock) when the RX FIFO becomes empty after
    // holding data, i.e. when the guest has consumed everything: the owner
    // feeds more input then. It runs on the vCPU thread that read RBR (or
    // wrote FCR), so it should only poke the event loop (e.g. an eventfd) or
    // call enqueue_input(). Set it before vCPUs run; it is read unlocked.
    void set_on_rx_drained(std::function<void()> cb) { on_rx_drained_ = std::move(cb); }

    // Bytes handed to the output callback / accepted by enqueue_input().
    uint64_t bytes_tx() const { return bytes_tx_.load(std::memory_order_relaxed); }
    uint64_t bytes_rx() const { return bytes_rx_.load(std::memory_order_relaxed); }

  private:
    // All *_locked members require mu_.
    uint8_t read_reg_locked(uint64_t reg, bool& drained);
    // Sets `tx` to true and `tx_byte` when a byte must go to the output.
    void write_reg_locked(uint64_t reg, uint8_t v, bool& tx, uint8_t& tx_byte, bool& drained);
    uint8_t interrupt_id_locked() const;  // IIR bits 0-3
    uint8_t modem_status_locked() const;  // MSR bits 4-7
    void set_mcr_locked(uint8_t v);
    bool rx_push_locked(uint8_t b);
    void update_irq_locked();

    IrqLine& irq_;
    OutputFn output_;
    std::function<void()> on_rx_drained_;

    std::mutex tx_mu_;  // serializes output_ calls; taken before mu_
    mutable std::mutex mu_;
    uint16_t divisor_ = 1;  // 115200 baud; never 0 (early consoles divide by it)
    uint8_t ier_ = 0;
    uint8_t fcr_ = 0;  // bits kept: FIFO enable, DMA mode, trigger level
    uint8_t lcr_ = 0;
    uint8_t mcr_ = 0;
    uint8_t lsr_errors_ = 0;  // OE/PE/FE/BI, cleared by reading LSR
    uint8_t msr_delta_ = 0;   // MSR bits 0-3, cleared by reading MSR
    uint8_t scr_ = 0;
    bool thre_pending_ = false;  // THRE interrupt latched until IIR read / THR write
    bool irq_level_ = false;

    std::array<uint8_t, kRxFifoCapacity> rx_{};
    size_t rx_head_ = 0;
    size_t rx_count_ = 0;

    std::atomic<uint64_t> bytes_tx_{0};
    std::atomic<uint64_t> bytes_rx_{0};
};

}  // namespace kvmsandbox
