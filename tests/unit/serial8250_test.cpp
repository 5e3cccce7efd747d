#include "devices/serial8250.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kvmsandbox {
namespace {

// Records every level the device drives, so tests can check both the current
// level and that set_level is only called on changes.
class FakeIrq : public IrqLine {
  public:
    void set_level(bool asserted) override {
        std::lock_guard lock(mu);
        levels.push_back(asserted);
    }
    bool level() {
        std::lock_guard lock(mu);
        return !levels.empty() && levels.back();
    }
    size_t calls() {
        std::lock_guard lock(mu);
        return levels.size();
    }

    std::mutex mu;
    std::vector<bool> levels;
};

constexpr uint64_t kRbr = 0, kThr = 0, kDll = 0, kIer = 1, kDlm = 1, kIir = 2, kFcr = 2, kLcr = 3,
                   kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kOut2 = 0x08;

class SerialTest : public ::testing::Test {
  protected:
    SerialTest()
        : uart(irq, [this](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); }) {}

    uint8_t rd(uint64_t reg) {
        uint8_t v = 0;
        uart.read(reg, std::span<uint8_t>(&v, 1));
        return v;
    }
    void wr(uint64_t reg, uint8_t v) { uart.write(reg, std::span<const uint8_t>(&v, 1)); }
    size_t feed(const std::string& s) {
        return uart.enqueue_input(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }

    FakeIrq irq;
    std::string out;
    Serial8250 uart;
};

TEST_F(SerialTest, ResetState) {
    EXPECT_EQ(rd(kLsr), 0x60);  // THRE | TEMT, no data
    EXPECT_EQ(rd(kIir), 0x01);  // no interrupt, FIFOs off
    EXPECT_EQ(rd(kMsr), 0xb0);  // DCD | DSR | CTS
    EXPECT_EQ(rd(kIer), 0x00);
    EXPECT_EQ(rd(kMcr), 0x00);
    EXPECT_EQ(irq.calls(), 0u);
}

TEST_F(SerialTest, OutputReceivesBytesExactly) {
    const std::string msg = std::string("hello\n\0\xff", 8);
    for (char c : msg) wr(kThr, static_cast<uint8_t>(c));
    EXPECT_EQ(out, msg);
    EXPECT_EQ(uart.bytes_tx(), msg.size());
    EXPECT_EQ(rd(kLsr) & 0x60, 0x60);  // instant transmit
}

TEST_F(SerialTest, ThreInterruptAfterEnablingIer) {
    wr(kMcr, kOut2);
    EXPECT_EQ(irq.calls(), 0u);
    wr(kIer, 0x02);
    EXPECT_TRUE(irq.level());
    EXPECT_EQ(rd(kIir), 0x02);
    // Reading IIR acknowledged THRE.
    EXPECT_FALSE(irq.level());
    EXPECT_EQ(rd(kIir), 0x01);
    // A THR write leaves THR empty again at once: a new THRE interrupt.
    wr(kThr, 'x');
    EXPECT_TRUE(irq.level());
    EXPECT_EQ(rd(kIir), 0x02);
    EXPECT_FALSE(irq.level());
    // Disabling THRI drops a pending THRE.
    wr(kThr, 'y');
    EXPECT_TRUE(irq.level());
    wr(kIer, 0x00);
    EXPECT_FALSE(irq.level());
    EXPECT_EQ(rd(kIir), 0x01);
    EXPECT_EQ(out, "xy");
}

TEST_F(SerialTest, ThreReassertsWhenReenabled) {
    // The sequence Linux's serial8250_do_startup uses to detect UART_BUG_THRE.
    wr(kIer, 0x02);
    EXPECT_EQ(rd(kIir) & 0x0f, 0x02);
    wr(kIer, 0x00);
    wr(kIer, 0x02);
    EXPECT_EQ(rd(kIir) & 0x0f, 0x02);
}

TEST_F(SerialTest, RxDataInterruptAfterEnqueue) {
    wr(kMcr, kOut2);
    wr(kIer, 0x01);
    EXPECT_EQ(irq.calls(), 0u);
    EXPECT_EQ(feed("ab"), 2u);
    EXPECT_TRUE(irq.level());
    EXPECT_EQ(rd(kLsr) & 0x01, 0x01);
    EXPECT_EQ(rd(kIir), 0x04);
    EXPECT_TRUE(irq.level());  // IIR read does not acknowledge RX data
    EXPECT_EQ(rd(kRbr), 'a');
    EXPECT_TRUE(irq.level());
    EXPECT_EQ(rd(kRbr), 'b');
    EXPECT_FALSE(irq.level());
    EXPECT_EQ(rd(kLsr) & 0x01, 0x00);
    EXPECT_EQ(rd(kIir), 0x01);
    EXPECT_EQ(uart.bytes_rx(), 2u);
    // set_level only on changes: up once, down once.
    EXPECT_EQ(irq.levels, (std::vector<bool>{true, false}));
}

TEST_F(SerialTest, NoInterruptWhenIerZero) {
    wr(kMcr, kOut2);
    feed("abc");
    wr(kThr, 'x');
    EXPECT_EQ(irq.calls(), 0u);
    EXPECT_EQ(rd(kIir), 0x01);
    EXPECT_EQ(rd(kLsr) & 0x01, 0x01);  // data still visible by polling
}

TEST_F(SerialTest, NoInterruptWithoutOut2) {
    wr(kIer, 0x03);
    feed("a");
    wr(kThr, 'x');
    EXPECT_EQ(irq.calls(), 0u);
    EXPECT_EQ(rd(kIir), 0x04);  // pending, but gated off the line
    // Setting OUT2 connects the pending interrupt.
    wr(kMcr, kOut2);
    EXPECT_TRUE(irq.level());
    wr(kMcr, 0x00);
    EXPECT_FALSE(irq.level());
}

TEST_F(SerialTest, IirPriorityRxOverThre) {
    wr(kMcr, kOut2);
    wr(kIer, 0x03);
    feed("z");
    EXPECT_EQ(rd(kIir), 0x04);
    EXPECT_EQ(rd(kRbr), 'z');
    EXPECT_TRUE(irq.level());  // THRE still pending behind RX data
    EXPECT_EQ(rd(kIir), 0x02);
    EXPECT_FALSE(irq.level());
}

TEST_F(SerialTest, FifoEnableShowsInIir) {
    wr(kFcr, 0x01);
    EXPECT_EQ(rd(kIir), 0xc1);
    wr(kIer, 0x01);
    feed("q");
    EXPECT_EQ(rd(kIir), 0xc4);
    wr(kFcr, 0x00);
    EXPECT_EQ(rd(kIir), 0x04);
}

TEST_F(SerialTest, FcrClearsRxFifo) {
    int drained = 0;
    uart.set_on_rx_drained([&] { ++drained; });
    feed("abc");
    wr(kFcr, 0x07);
    EXPECT_EQ(rd(kLsr) & 0x01, 0x00);
    EXPECT_EQ(uart.rx_free(), Serial8250::kRxFifoCapacity);
    EXPECT_EQ(drained, 1);
    wr(kFcr, 0x07);  // already empty: no second notification
    EXPECT_EQ(drained, 1);
}

TEST_F(SerialTest, DivisorLatchReadBack) {
    wr(kIer, 0x05);
    wr(kLcr, 0x83);  // DLAB, 8N1
    wr(kDll, 0x34);
    wr(kDlm, 0x12);
    EXPECT_EQ(rd(kDll), 0x34);
    EXPECT_EQ(rd(kDlm), 0x12);
    EXPECT_TRUE(out.empty());  // DLL write is not a transmit
    wr(kLcr, 0x03);
    EXPECT_EQ(rd(kLcr), 0x03);
    EXPECT_EQ(rd(kIer), 0x05);  // IER untouched by the DLM write
    wr(kThr, 'k');
    EXPECT_EQ(out, "k");
    wr(kLcr, 0x80);
    EXPECT_EQ(rd(kDll), 0x34);
    EXPECT_EQ(rd(kDlm), 0x12);
}

TEST_F(SerialTest, DefaultDivisorIsNonZero) {
    wr(kLcr, 0x80);
    EXPECT_NE(rd(kDll) | (rd(kDlm) << 8), 0);
}

TEST_F(SerialTest, IerKeepsLowNibbleOnly) {
    wr(kIer, 0xff);
    EXPECT_EQ(rd(kIer), 0x0f);
    wr(kIer, 0x00);
    EXPECT_EQ(rd(kIer), 0x00);
}

TEST_F(SerialTest, ScratchRegister) {
    wr(kScr, 0xa5);
    EXPECT_EQ(rd(kScr), 0xa5);
    wr(kScr, 0x5a);
    EXPECT_EQ(rd(kScr), 0x5a);
}

TEST_F(SerialTest, FifoCapacityAndBackpressure) {
    int drained = 0;
    uart.set_on_rx_drained([&] { ++drained; });
    std::vector<uint8_t> big(Serial8250::kRxFifoCapacity + 904);
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
    EXPECT_EQ(uart.enqueue_input(big), Serial8250::kRxFifoCapacity);
    EXPECT_EQ(uart.rx_free(), 0u);
    EXPECT_FALSE(uart.rx_space());
    EXPECT_EQ(uart.enqueue_input(std::span<const uint8_t>(big).subspan(0, 1)), 0u);

    EXPECT_EQ(rd(kRbr), big[0]);
    EXPECT_EQ(uart.rx_free(), 1u);
    EXPECT_TRUE(uart.rx_space());
    // Room for exactly one more; it goes to the end, after the queued data.
    const uint8_t extra[2] = {0xee, 0xdd};
    EXPECT_EQ(uart.enqueue_input(extra), 1u);

    for (size_t i = 1; i < Serial8250::kRxFifoCapacity; ++i) {
        ASSERT_EQ(rd(kRbr), big[i]) << i;
        ASSERT_EQ(drained, 0);
    }
    EXPECT_EQ(rd(kRbr), 0xee);
    EXPECT_EQ(drained, 1);
    EXPECT_EQ(rd(kLsr) & 0x01, 0x00);
    EXPECT_EQ(uart.rx_free(), Serial8250::kRxFifoCapacity);
    EXPECT_EQ(uart.bytes_rx(), Serial8250::kRxFifoCapacity + 1);
}

TEST_F(SerialTest, DrainedCallbackMayEnqueue) {
    // The owner refills from the callback: it must run without the lock.
    std::string pending = "second";
    uart.set_on_rx_drained([&] {
        if (!pending.empty()) {
            feed(pending);
            pending.clear();
        }
    });
    feed("1");
    EXPECT_EQ(rd(kRbr), '1');
    std::string got;
    while (rd(kLsr) & 0x01) got.push_back(static_cast<char>(rd(kRbr)));
    EXPECT_EQ(got, "second");
}

TEST_F(SerialTest, LoopbackMirrorsModemControlInMsr) {
    wr(kMcr, 0x1f);  // loop + DTR RTS OUT1 OUT2
    EXPECT_EQ(rd(kMsr) & 0xf0, 0xf0);
    wr(kMcr, 0x10 | 0x08 | 0x02);  // loop + OUT2 + RTS: Linux autoconfig expects 0x90
    EXPECT_EQ(rd(kMsr) & 0xf0, 0x90);
    wr(kMcr, 0x10 | 0x01);  // DTR -> DSR
    EXPECT_EQ(rd(kMsr) & 0xf0, 0x20);
    wr(kMcr, 0x10 | 0x04);  // OUT1 -> RI
    EXPECT_EQ(rd(kMsr) & 0xf0, 0x40);
    wr(kMcr, 0x10);
    EXPECT_EQ(rd(kMsr) & 0xf0, 0x00);
    wr(kMcr, 0x00);
    EXPECT_EQ(rd(kMsr) & 0xf0, 0xb0);
}

TEST_F(SerialTest, LoopbackDeltaBits) {
    rd(kMsr);
    wr(kMcr, 0x10);  // CTS, DSR, DCD all drop
    EXPECT_EQ(rd(kMsr), 0x01 | 0x02 | 0x08);
    EXPECT_EQ(rd(kMsr), 0x00);  // deltas cleared by the read
    wr(kMcr, 0x14);             // RI rises: no TERI (trailing edge only)
    EXPECT_EQ(rd(kMsr), 0x40);
    wr(kMcr, 0x10);  // RI falls
    EXPECT_EQ(rd(kMsr), 0x04);
}

TEST_F(SerialTest, ModemStatusInterrupt) {
    wr(kIer, 0x08);
    wr(kMcr, 0x10 | kOut2);  // loopback: modem inputs change
    EXPECT_EQ(rd(kIir), 0x00);
    EXPECT_TRUE(irq.level());
    rd(kMsr);
    EXPECT_EQ(rd(kIir), 0x01);
    EXPECT_FALSE(irq.level());
}

TEST_F(SerialTest, LoopbackTransmitGoesToReceiver) {
    wr(kMcr, 0x10);
    wr(kThr, 'L');
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(uart.bytes_tx(), 0u);
    EXPECT_EQ(rd(kLsr) & 0x01, 0x01);
    EXPECT_EQ(rd(kRbr), 'L');
    wr(kMcr, 0x00);
    wr(kThr, 'N');
    EXPECT_EQ(out, "N");
}

TEST_F(SerialTest, LineStatusInterruptOnLoopbackOverrun) {
    std::vector<uint8_t> fill(Serial8250::kRxFifoCapacity, 'f');
    uart.enqueue_input(fill);
    wr(kMcr, 0x10 | kOut2);
    rd(kMsr);
    wr(kIer, 0x05);             // line status + RX data
    wr(kThr, 'x');              // FIFO full: overrun
    EXPECT_EQ(rd(kIir), 0x06);  // line status beats RX data
    EXPECT_EQ(rd(kLsr) & 0x03, 0x03);
    EXPECT_EQ(rd(kLsr) & 0x02, 0x00);  // OE cleared by the previous read
    EXPECT_EQ(rd(kIir), 0x04);
}

TEST_F(SerialTest, WideAccessSplitsIntoRegisters) {
    wr(kScr, 0x77);
    uint8_t buf[2] = {};
    uart.read(6, buf);  // MSR, SCR
    EXPECT_EQ(buf[0], 0xb0);
    EXPECT_EQ(buf[1], 0x77);
    uint8_t past[2] = {};
    uart.read(7, past);  // SCR, then past the device
    EXPECT_EQ(past[0], 0x77);
    EXPECT_EQ(past[1], 0xff);
}

TEST(Serial8250Concurrency, ConcurrentWritersAndFeeder) {
    FakeIrq irq;
    std::mutex out_mu;
    size_t out_count = 0;
    Serial8250 uart(irq, [&](std::span<const uint8_t> b) {
        std::lock_guard lock(out_mu);
        out_count += b.size();
    });
    uint8_t mcr = kOut2, ier = 0x03;
    uart.write(kMcr, std::span<const uint8_t>(&mcr, 1));
    uart.write(kIer, std::span<const uint8_t>(&ier, 1));

    constexpr int kPerThread = 2000;
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < kPerThread; ++i) {
                uint8_t b = 'a';
                uart.write(kThr, std::span<const uint8_t>(&b, 1));
                uint8_t v;
                uart.read(kIir, std::span<uint8_t>(&v, 1));
            }
        });
    }
    size_t fed = 0;
    threads.emplace_back([&] {
        const uint8_t chunk[64] = {};
        while (fed < 10000) fed += uart.enqueue_input(chunk);
    });
    size_t consumed = 0;
    while (consumed < 10000) {
        uint8_t lsr;
        uart.read(kLsr, std::span<uint8_t>(&lsr, 1));
        if (lsr & 0x01) {
            uint8_t b;
            uart.read(kRbr, std::span<uint8_t>(&b, 1));
            ++consumed;
        }
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(out_count, 2u * kPerThread);
    EXPECT_EQ(uart.bytes_tx(), 2u * kPerThread);
    EXPECT_GE(fed, 10000u);
}

}  // namespace
}  // namespace kvmsandbox
