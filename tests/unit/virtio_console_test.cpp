#include "virtio/console/console.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fake_driver.h"

namespace kvmsandbox {
namespace {

using fake::DriverQueue;
using fake::FakeGuest;
using fake::FakeInterrupt;
using fake::Seg;
using C = VirtioConsole;

class RecordingBackend : public ConsolePortBackend {
  public:
    void on_guest_output(std::span<const std::span<uint8_t>> data) override {
        ++output_calls;
        std::vector<size_t> sizes;
        for (const auto& b : data) {
            output.append(reinterpret_cast<const char*>(b.data()), b.size());
            sizes.push_back(b.size());
        }
        pieces.push_back(sizes);
    }
    void on_guest_open(bool open) override {
        opens.push_back(open);
        if (open_hook) open_hook(open);
    }
    void on_rx_space() override {
        ++rx_space;
        if (rx_hook) rx_hook();
    }

    std::string output;
    int output_calls = 0;
    std::vector<std::vector<size_t>> pieces;
    std::vector<bool> opens;
    int rx_space = 0;
    std::function<void(bool)> open_hook;
    std::function<void()> rx_hook;
};

struct Ctl {
    uint32_t id = 0;
    uint16_t event = 0;
    uint16_t value = 0;
    std::string extra;
    uint32_t used_len = 0;
};

std::vector<uint8_t> ctl_bytes(uint32_t id, uint16_t event, uint16_t value) {
    return {static_cast<uint8_t>(id),       static_cast<uint8_t>(id >> 8),
            static_cast<uint8_t>(id >> 16), static_cast<uint8_t>(id >> 24),
            static_cast<uint8_t>(event),    static_cast<uint8_t>(event >> 8),
            static_cast<uint8_t>(value),    static_cast<uint8_t>(value >> 8)};
}

// A FillFn that hands out `src` in pieces of at most `max_per_chain` bytes,
// then returns `at_end` (0: nothing now, < 0: end of input).
struct Source {
    std::string src;
    size_t pos = 0;
    size_t max_per_chain = SIZE_MAX;
    ssize_t at_end = 0;
    int calls = 0;

    ssize_t operator()(std::span<const std::span<uint8_t>> bufs) {
        ++calls;
        if (pos == src.size()) return at_end;
        size_t budget = std::min(max_per_chain, src.size() - pos);
        size_t done = 0;
        for (const auto& b : bufs) {
            size_t k = std::min(budget - done, b.size());
            std::memcpy(b.data(), src.data() + pos + done, k);
            done += k;
            if (done == budget) break;
        }
        pos += done;
        return static_cast<ssize_t>(done);
    }
};

constexpr uint16_t kQSize = 64;

class VirtioConsoleTest : public ::testing::Test {
  protected:
    VirtioConsoleTest() : con({{"p0", &b[0]}, {"p1.name", &b[1]}, {"p2", &b[2]}}) {}

    void SetUp() override {
        make_queues();
        activate();
    }

    void make_queues() {
        queues.clear();
        for (uint16_t i = 0; i < con.num_queues(); ++i)
            queues.push_back(std::make_unique<DriverQueue>(g, kQSize, C::kQueueSize));
    }
    void activate(uint64_t features = virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT)) {
        std::vector<SplitQueue*> qs;
        for (auto& q : queues) qs.push_back(q->ptr());
        auto r = con.activate(features, qs, irq);
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }

    DriverQueue& q(uint16_t i) { return *queues.at(i); }
    static uint16_t rxq(uint32_t p) { return p == 0 ? 0 : static_cast<uint16_t>(2 + 2 * p); }
    static uint16_t txq(uint32_t p) { return p == 0 ? 1 : static_cast<uint16_t>(3 + 2 * p); }

    void send_ctl_raw(std::span<const uint8_t> msg) {
        q(3).add_out(msg);
        con.queue_notify(3);
    }
    void send_ctl(uint32_t id, uint16_t event, uint16_t value) {
        send_ctl_raw(ctl_bytes(id, event, value));
    }
    void post_ctl_rx(int n, uint32_t len = 128) {
        for (int i = 0; i < n; ++i) q(2).add_in(len);
        con.queue_notify(2);
    }
    std::vector<Ctl> read_ctl() {
        std::vector<Ctl> out;
        for (const auto& u : q(2).collect_used()) {
            auto w = u.written(g);
            Ctl c;
            c.used_len = u.len;
            EXPECT_GE(w.size(), 8u);
            if (w.size() < 8) continue;
            c.id = w[0] | w[1] << 8 | w[2] << 16 | static_cast<uint32_t>(w[3]) << 24;
            c.event = static_cast<uint16_t>(w[4] | w[5] << 8);
            c.value = static_cast<uint16_t>(w[6] | w[7] << 8);
            c.extra.assign(w.begin() + 8, w.end());
            out.push_back(c);
        }
        return out;
    }
    // The Linux driver's start: control buffers, DEVICE_READY, PORT_READY
    // for every port. Discards the device's answers.
    void bring_up() {
        post_ctl_rx(32);
        send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
        for (uint32_t p = 0; p < 3; ++p) send_ctl(p, VIRTIO_CONSOLE_PORT_READY, 1);
        read_ctl();
        q(3).collect_used();
    }
    void guest_open(uint32_t p, bool open = true) {
        send_ctl(p, VIRTIO_CONSOLE_PORT_OPEN, open ? 1 : 0);
    }

    FakeGuest g{4 << 20};
    RecordingBackend b[3];
    VirtioConsole con;
    std::vector<std::unique_ptr<DriverQueue>> queues;
    FakeInterrupt irq;
};

TEST_F(VirtioConsoleTest, IdentityAndConfig) {
    EXPECT_EQ(con.device_type(), VIRTIO_ID_CONSOLE);
    EXPECT_EQ(con.device_features() & virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT),
              virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT));
    EXPECT_EQ(con.num_queues(), 8);
    EXPECT_EQ(con.config_size(), 12u);
    uint8_t cfg[12];
    std::memset(cfg, 0xaa, sizeof(cfg));
    con.read_config(0, cfg);
    EXPECT_EQ(cfg[0] | cfg[1] << 8, 0);                                // cols
    EXPECT_EQ(cfg[2] | cfg[3] << 8, 0);                                // rows
    EXPECT_EQ(cfg[4] | cfg[5] << 8 | cfg[6] << 16 | cfg[7] << 24, 3);  // max_nr_ports
    uint8_t one = 0;
    con.read_config(4, std::span<uint8_t>(&one, 1));
    EXPECT_EQ(one, 3);
}

TEST_F(VirtioConsoleTest, ActivateValidates) {
    VirtioConsole c2({{"a", nullptr}});
    std::vector<SplitQueue*> four{q(0).ptr(), q(1).ptr(), q(2).ptr(), q(3).ptr()};
    EXPECT_FALSE(c2.activate(0, four, irq).has_value());  // no MULTIPORT
    std::vector<SplitQueue*> three{q(0).ptr(), q(1).ptr(), q(2).ptr()};
    EXPECT_FALSE(c2.activate(virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT), three, irq).has_value());
    EXPECT_TRUE(c2.activate(virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT), four, irq).has_value());
    c2.reset();
}

TEST_F(VirtioConsoleTest, NotifyBeforeActivationIgnored) {
    con.reset();
    make_queues();
    q(2).add_in(64);
    q(3).add_out(ctl_bytes(0, VIRTIO_CONSOLE_DEVICE_READY, 1));
    for (uint16_t i = 0; i < 8; ++i) con.queue_notify(i);
    EXPECT_EQ(q(3).used_idx(), 0);
    EXPECT_EQ(q(2).used_idx(), 0);
    EXPECT_TRUE(irq.queue_signals().empty());
}

TEST_F(VirtioConsoleTest, DeviceReadyAddsEveryPort) {
    post_ctl_rx(8);
    send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    // The control message itself is consumed with nothing written.
    auto tx = q(3).collect_used();
    ASSERT_EQ(tx.size(), 1u);
    EXPECT_EQ(tx[0].len, 0u);
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 3u);
    for (uint32_t p = 0; p < 3; ++p) {
        EXPECT_EQ(msgs[p].id, p);
        EXPECT_EQ(msgs[p].event, VIRTIO_CONSOLE_PORT_ADD);
        EXPECT_EQ(msgs[p].value, 1);
        EXPECT_EQ(msgs[p].used_len, 8u);
    }
    EXPECT_GE(irq.signals_for(2), 1u);
    EXPECT_GE(irq.signals_for(3), 1u);
    EXPECT_EQ(irq.needs_reset(), 0);
}

TEST_F(VirtioConsoleTest, PortReadySendsNameThenOpen) {
    post_ctl_rx(8);
    send_ctl(1, VIRTIO_CONSOLE_PORT_READY, 1);
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].id, 1u);
    EXPECT_EQ(msgs[0].event, VIRTIO_CONSOLE_PORT_NAME);
    EXPECT_EQ(msgs[0].extra, "p1.name");
    EXPECT_EQ(msgs[0].used_len, 8u + 7u);
    EXPECT_EQ(msgs[1].id, 1u);
    EXPECT_EQ(msgs[1].event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(msgs[1].value, 1);
    EXPECT_EQ(msgs[1].used_len, 8u);

    send_ctl(0, VIRTIO_CONSOLE_PORT_READY, 1);
    msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].id, 0u);
    EXPECT_EQ(msgs[0].extra, "p0");
}

TEST_F(VirtioConsoleTest, PortReadyForUnknownPortOrFailureIgnored) {
    post_ctl_rx(8);
    send_ctl(3, VIRTIO_CONSOLE_PORT_READY, 1);  // only ports 0..2 exist
    send_ctl(7, VIRTIO_CONSOLE_PORT_READY, 1);
    send_ctl(1, VIRTIO_CONSOLE_PORT_READY, 0);  // the guest failed to add the port
    EXPECT_EQ(q(3).collect_used().size(), 3u);
    EXPECT_TRUE(read_ctl().empty());
}

TEST_F(VirtioConsoleTest, GuestOpenAndCloseReachBackend) {
    bring_up();
    guest_open(1);
    EXPECT_EQ(b[1].opens, std::vector<bool>{true});
    guest_open(1);  // no change: not reported again
    EXPECT_EQ(b[1].opens, std::vector<bool>{true});
    guest_open(1, false);
    EXPECT_EQ(b[1].opens, (std::vector<bool>{true, false}));
    guest_open(9);  // no such port
    EXPECT_TRUE(b[0].opens.empty());
    EXPECT_TRUE(b[2].opens.empty());
    EXPECT_EQ(irq.needs_reset(), 0);
}

TEST_F(VirtioConsoleTest, GuestOutputReachesBackendByteExact) {
    bring_up();
    // A multi-buffer chain on port 2, two chains on port 0 in one kick.
    q(txq(2)).add_out_pieces({"hel", "lo, ", "world\n"});
    con.queue_notify(txq(2));
    std::string bin;
    for (int i = 0; i < 256; ++i) bin.push_back(static_cast<char>(i));
    q(txq(0)).add_out_pieces({bin.substr(0, 100), bin.substr(100)});
    q(txq(0)).add_out("tail");
    con.queue_notify(txq(0));

    EXPECT_EQ(b[2].output, "hello, world\n");
    EXPECT_EQ(b[2].pieces, (std::vector<std::vector<size_t>>{{3, 4, 6}}));
    EXPECT_EQ(b[0].output, bin + "tail");
    EXPECT_EQ(b[0].output_calls, 2);
    EXPECT_TRUE(b[1].output.empty());

    auto u2 = q(txq(2)).collect_used();
    ASSERT_EQ(u2.size(), 1u);
    EXPECT_EQ(u2[0].len, 0u);
    EXPECT_EQ(q(txq(0)).collect_used().size(), 2u);
    EXPECT_EQ(con.bytes_from_guest(), 13u + 256u + 4u);
    EXPECT_GE(irq.signals_for(txq(2)), 1u);
    EXPECT_GE(irq.signals_for(txq(0)), 1u);
}

// A backend whose reader has room for `budget` bytes at a time.
class SlowBackend : public ConsolePortBackend {
  public:
    void on_guest_output(std::span<const std::span<uint8_t>>) override { ADD_FAILURE(); }
    size_t take_guest_output(std::span<const std::span<uint8_t>> data) override {
        size_t took = 0;
        for (const auto& b : data) {
            size_t k = std::min(budget - took, b.size());
            taken.append(reinterpret_cast<const char*>(b.data()), k);
            took += k;
            if (took == budget) break;
        }
        budget -= took;
        return took;
    }
    size_t budget = 0;
    std::string taken;
};

TEST_F(VirtioConsoleTest, SlowBackendLeavesTheRestInTheQueueUntilResumed) {
    SlowBackend slow;
    VirtioConsole c2({{"a", &slow}});
    std::vector<std::unique_ptr<DriverQueue>> qs2;
    std::vector<SplitQueue*> raw;
    for (uint16_t i = 0; i < c2.num_queues(); ++i) {
        qs2.push_back(std::make_unique<DriverQueue>(g, kQSize, C::kQueueSize));
        raw.push_back(qs2.back()->ptr());
    }
    ASSERT_TRUE(c2.activate(virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT), raw, irq).has_value());
    qs2[1]->add_out_pieces({"abc", "defgh"});
    qs2[1]->add_out("ij");
    slow.budget = 4;  // room for part of the first chain only
    c2.queue_notify(1);
    EXPECT_EQ(slow.taken, "abcd");
    EXPECT_TRUE(qs2[1]->collect_used().empty()) << "a chain only partly taken stays the guest's";
    EXPECT_EQ(c2.bytes_from_guest(), 4u);

    c2.queue_notify(1);  // the guest kicks again: still no room, nothing moves
    EXPECT_EQ(slow.taken, "abcd");

    slow.budget = 5;  // room for the rest of the first chain and one more byte
    c2.resume_output(0);
    EXPECT_EQ(slow.taken, "abcdefghi");
    EXPECT_EQ(qs2[1]->collect_used().size(), 1u);

    slow.budget = 100;
    c2.resume_output(0);
    EXPECT_EQ(slow.taken, "abcdefghij") << "the second chain resumes after its taken byte";
    EXPECT_EQ(qs2[1]->collect_used().size(), 1u);
    EXPECT_EQ(c2.bytes_from_guest(), 10u);
    c2.resume_output(7);  // an unknown port is ignored
}

TEST_F(VirtioConsoleTest, DrainOutputProcessesPendingChains) {
    bring_up();
    q(txq(1)).add_out("no kick");
    EXPECT_TRUE(b[1].output.empty());
    con.drain_output();
    EXPECT_EQ(b[1].output, "no kick");
    EXPECT_EQ(q(txq(1)).collect_used().size(), 1u);
}

TEST_F(VirtioConsoleTest, OutputOnPortWithoutBackendIsDropped) {
    VirtioConsole c2({{"a", nullptr}, {"b", nullptr}});
    std::vector<SplitQueue*> qs;
    for (uint16_t i = 0; i < c2.num_queues(); ++i) qs.push_back(q(i).ptr());
    ASSERT_TRUE(c2.activate(virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT), qs, irq).has_value());
    q(txq(1)).add_out("dropped");
    c2.queue_notify(txq(1));
    EXPECT_EQ(q(txq(1)).collect_used().size(), 1u);
    EXPECT_EQ(c2.bytes_from_guest(), 7u);
    c2.reset();
}

TEST_F(VirtioConsoleTest, DeliverWaitsForGuestOpen) {
    bring_up();
    q(rxq(1)).add_in(64);
    con.queue_notify(rxq(1));
    EXPECT_EQ(b[1].rx_space, 1);
    EXPECT_FALSE(con.can_deliver(1));
    Source s{"data"};
    EXPECT_EQ(con.deliver(1, std::ref(s)), 0u);
    EXPECT_EQ(s.calls, 0);
    EXPECT_EQ(q(rxq(1)).used_idx(), 0);

    guest_open(1);
    EXPECT_TRUE(con.can_deliver(1));
    EXPECT_FALSE(con.can_deliver(0));
    EXPECT_FALSE(con.can_deliver(17));
    EXPECT_EQ(con.deliver(1, std::ref(s)), 4u);
    auto u = q(rxq(1)).collect_used();
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].len, 4u);
    EXPECT_EQ(u[0].written(g), fake::bytes("data"));
    EXPECT_EQ(con.bytes_to_guest(), 4u);
    EXPECT_GE(irq.signals_for(rxq(1)), 1u);
    EXPECT_EQ(con.deliver(99, std::ref(s)), 0u);
}

TEST_F(VirtioConsoleTest, DeliverFillsSeveralChainsWithExactLengths) {
    bring_up();
    guest_open(0);
    // Chain A: two writable buffers (5 + 7 bytes), chain B: 10 bytes, chain C: 10 bytes.
    uint64_t a1 = g.alloc(5), a2 = g.alloc(7);
    q(rxq(0)).add_chain({{a1, 5, true}, {a2, 7, true}});
    q(rxq(0)).add_in(10);
    q(rxq(0)).add_in(10);
    Source s{"0123456789abcdefghijklmno"};  // 25 bytes
    s.max_per_chain = 12;
    EXPECT_EQ(con.deliver(0, std::ref(s)), 25u);
    auto u = q(rxq(0)).collect_used();
    ASSERT_EQ(u.size(), 3u);
    EXPECT_EQ(u[0].len, 12u);
    EXPECT_EQ(g.read_str(a1, 5), "01234");
    EXPECT_EQ(g.read_str(a2, 7), "56789ab");
    EXPECT_EQ(u[1].len, 10u);
    EXPECT_EQ(u[1].written(g), fake::bytes("cdefghijkl"));
    EXPECT_EQ(u[2].len, 3u);
    EXPECT_EQ(u[2].written(g), fake::bytes("mno"));
    EXPECT_EQ(con.bytes_to_guest(), 25u);

    // More data than buffers: what does not fit stays with the caller.
    q(rxq(0)).add_in(4);
    Source t{"0123456789"};
    EXPECT_EQ(con.deliver(0, std::ref(t)), 4u);
    EXPECT_EQ(t.pos, 4u);
    u = q(rxq(0)).collect_used();
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].len, 4u);
}

TEST_F(VirtioConsoleTest, DeliverAtEndOfInputStopsAtOnce) {
    bring_up();
    guest_open(2);
    q(rxq(2)).add_in(16);
    q(rxq(2)).add_in(16);
    Source s{""};
    s.at_end = -1;
    EXPECT_EQ(con.deliver(2, std::ref(s)), 0u);
    EXPECT_EQ(s.calls, 1);  // stops at the first negative answer
    for (const auto& u : q(rxq(2)).collect_used()) EXPECT_EQ(u.len, 0u);
    EXPECT_EQ(irq.needs_reset(), 0);
}

// When `fill` has nothing more (readv() gave EAGAIN after the first chain
// took what the host fd had), the next chain must not be completed empty:
// the Linux driver hands an empty buffer to read(), which returns 0, i.e. a
// premature end of file for a guest reading a slow pipe.
TEST_F(VirtioConsoleTest, SourceRunningDryDoesNotCompleteEmptyChain) {
    bring_up();
    guest_open(2);
    q(rxq(2)).add_in(16);
    q(rxq(2)).add_in(16);
    Source s{"abc"};  // then 0: nothing more for now
    EXPECT_EQ(con.deliver(2, std::ref(s)), 3u);
    auto u = q(rxq(2)).collect_used();
    ASSERT_GE(u.size(), 1u);
    EXPECT_EQ(u[0].len, 3u);
    EXPECT_EQ(u[0].written(g), fake::bytes("abc"));
    for (size_t i = 1; i < u.size(); ++i)
        EXPECT_NE(u[i].len, 0u) << "an empty used rx buffer reads as EOF in the Linux guest";
    EXPECT_EQ(u.size(), 1u) << "the second chain should stay with the device";

    // Same when the very first chain cannot be filled.
    Source none{""};
    EXPECT_EQ(con.deliver(2, std::ref(none)), 0u);
    for (const auto& e : q(rxq(2)).collect_used())
        EXPECT_NE(e.len, 0u) << "an empty used rx buffer reads as EOF in the Linux guest";
}

TEST_F(VirtioConsoleTest, BackendMayDeliverFromCallbacks) {
    bring_up();
    Source s{"hello"};
    size_t from_open = 0, from_rx = 0;
    b[1].open_hook = [&](bool open) {
        if (open) from_open += con.deliver(1, std::ref(s));
    };
    b[1].rx_hook = [&] { from_rx += con.deliver(1, std::ref(s)); };
    q(rxq(1)).add_in(3);
    guest_open(1);  // must not deadlock
    EXPECT_EQ(from_open, 3u);
    q(rxq(1)).add_in(8);
    con.queue_notify(rxq(1));
    EXPECT_EQ(from_rx, 2u);
    auto u = q(rxq(1)).collect_used();
    ASSERT_EQ(u.size(), 2u);
    EXPECT_EQ(u[0].written(g), fake::bytes("hel"));
    EXPECT_EQ(u[1].written(g), fake::bytes("lo"));
}

TEST_F(VirtioConsoleTest, SetHostOpenFalseSendsPortOpenZero) {
    bring_up();
    con.set_host_open(1, false);
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].id, 1u);
    EXPECT_EQ(msgs[0].event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(msgs[0].value, 0);
    con.set_host_open(1, false);  // no change, nothing sent
    EXPECT_TRUE(read_ctl().empty());
    con.set_host_open(1, true);
    msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].value, 1);
    con.set_host_open(42, false);  // no such port
    EXPECT_TRUE(read_ctl().empty());
}

TEST_F(VirtioConsoleTest, SetHostOpenBeforePortReadyIsAnnouncedAtPortReady) {
    post_ctl_rx(8);
    con.set_host_open(2, false);
    EXPECT_TRUE(read_ctl().empty());
    send_ctl(2, VIRTIO_CONSOLE_PORT_READY, 1);
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].event, VIRTIO_CONSOLE_PORT_NAME);
    EXPECT_EQ(msgs[0].extra, "p2");
    EXPECT_EQ(msgs[1].event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(msgs[1].value, 0);
}

TEST_F(VirtioConsoleTest, ControlMessagesWaitForReceiveBuffers) {
    send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);  // no control receive buffers yet
    send_ctl(1, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(q(3).collect_used().size(), 2u);
    EXPECT_TRUE(read_ctl().empty());
    EXPECT_EQ(irq.signals_for(2), 0u);

    post_ctl_rx(2);  // room for two of the five
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].event, VIRTIO_CONSOLE_PORT_ADD);
    EXPECT_EQ(msgs[0].id, 0u);
    EXPECT_EQ(msgs[1].event, VIRTIO_CONSOLE_PORT_ADD);
    EXPECT_EQ(msgs[1].id, 1u);
    EXPECT_GE(irq.signals_for(2), 1u);

    post_ctl_rx(10);
    msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 3u);
    EXPECT_EQ(msgs[0].event, VIRTIO_CONSOLE_PORT_ADD);
    EXPECT_EQ(msgs[0].id, 2u);
    EXPECT_EQ(msgs[1].event, VIRTIO_CONSOLE_PORT_NAME);
    EXPECT_EQ(msgs[1].extra, "p1.name");
    EXPECT_EQ(msgs[2].event, VIRTIO_CONSOLE_PORT_OPEN);
    // The spare buffers stay with the device.
    EXPECT_EQ(q(2).outstanding(), 7u);
}

TEST_F(VirtioConsoleTest, ShortControlMessageIgnored) {
    post_ctl_rx(8);
    auto full = ctl_bytes(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    send_ctl_raw(std::span<const uint8_t>(full).first(7));
    send_ctl_raw(std::span<const uint8_t>(full).first(1));
    auto u = q(3).collect_used();
    ASSERT_EQ(u.size(), 2u);  // returned to the driver, nothing else
    EXPECT_TRUE(read_ctl().empty());
    EXPECT_EQ(irq.needs_reset(), 0);
    // The device still works afterwards.
    send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(read_ctl().size(), 3u);
}

TEST_F(VirtioConsoleTest, ControlMessageSplitAcrossBuffersAccepted) {
    post_ctl_rx(8);
    auto m = ctl_bytes(2, VIRTIO_CONSOLE_PORT_READY, 1);
    q(3).add_out_pieces(
        {std::string(m.begin(), m.begin() + 3), std::string(m.begin() + 3, m.end())});
    con.queue_notify(3);
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].extra, "p2");
}

TEST_F(VirtioConsoleTest, UnknownOrHostOnlyEventsIgnored) {
    post_ctl_rx(8);
    send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 0);  // value must be 1
    send_ctl(0, VIRTIO_CONSOLE_PORT_ADD, 1);
    send_ctl(0, VIRTIO_CONSOLE_PORT_NAME, 1);
    send_ctl(0, 0x1234, 1);
    EXPECT_EQ(q(3).collect_used().size(), 4u);
    EXPECT_TRUE(read_ctl().empty());
    EXPECT_EQ(irq.needs_reset(), 0);
}

TEST_F(VirtioConsoleTest, BrokenTxChainNeedsResetAndStops) {
    bring_up();
    guest_open(1);
    // A buffer that lies outside guest memory.
    q(txq(1)).add_chain({{g.end() - 4, 16, false}});
    con.queue_notify(txq(1));
    EXPECT_EQ(irq.needs_reset(), 1);
    EXPECT_TRUE(b[1].output.empty());

    // The device serves nothing any more, on any queue.
    q(txq(0)).add_out("ignored");
    con.queue_notify(txq(0));
    EXPECT_TRUE(b[0].output.empty());
    send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_TRUE(read_ctl().empty());
    q(rxq(1)).add_in(16);
    EXPECT_FALSE(con.can_deliver(1));
    Source s{"x"};
    EXPECT_EQ(con.deliver(1, std::ref(s)), 0u);
    con.set_host_open(1, false);
    con.drain_output();
    EXPECT_TRUE(read_ctl().empty());
    EXPECT_EQ(irq.needs_reset(), 1);
}

TEST_F(VirtioConsoleTest, BrokenControlRxChainNeedsReset) {
    // A zero-length control receive buffer breaks the ring when the device
    // next needs one.
    q(2).add_chain({{g.alloc(16), 0, true}});
    con.queue_notify(2);  // nothing queued: the device does not look yet
    send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(irq.needs_reset(), 1);
    post_ctl_rx(4);
    EXPECT_TRUE(read_ctl().empty());
}

TEST_F(VirtioConsoleTest, ResetThenReactivateWorks) {
    bring_up();
    guest_open(1);
    q(txq(1)).add_chain({{0x10, 8, false}});  // below guest memory
    con.queue_notify(txq(1));
    ASSERT_EQ(irq.needs_reset(), 1);

    con.reset();
    // After reset() the device must not touch the old queues.
    con.queue_notify(3);
    con.drain_output();
    Source s0{"x"};
    EXPECT_EQ(con.deliver(1, std::ref(s0)), 0u);

    // The driver sets everything up again.
    irq.clear();
    for (auto& dq : queues) dq->configure();
    activate();
    post_ctl_rx(16);
    send_ctl(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 3u);
    send_ctl(1, VIRTIO_CONSOLE_PORT_READY, 1);
    msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[1].event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(msgs[1].value, 1);

    // Open state was forgotten: nothing is delivered until the guest reopens.
    q(rxq(1)).add_in(16);
    Source s{"again"};
    EXPECT_EQ(con.deliver(1, std::ref(s)), 0u);
    guest_open(1);
    // The reset closed the guest's end; the backend heard it, then the reopen.
    EXPECT_EQ(b[1].opens, (std::vector<bool>{true, false, true}));
    EXPECT_EQ(con.deliver(1, std::ref(s)), 5u);
    q(txq(1)).add_out("out");
    con.queue_notify(txq(1));
    EXPECT_EQ(b[1].output, "out");
    EXPECT_EQ(irq.needs_reset(), 0);
}

TEST_F(VirtioConsoleTest, HostClosedStateSurvivesReset) {
    bring_up();
    con.set_host_open(0, false);
    con.reset();
    for (auto& dq : queues) dq->configure();
    activate();
    post_ctl_rx(8);
    send_ctl(0, VIRTIO_CONSOLE_PORT_READY, 1);
    auto msgs = read_ctl();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[1].event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(msgs[1].value, 0);
}

TEST_F(VirtioConsoleTest, NoInterruptFlagSuppressesSignals) {
    bring_up();
    irq.clear();
    q(txq(2)).set_avail_flags(VRING_AVAIL_F_NO_INTERRUPT);
    q(txq(2)).add_out("quiet");
    con.queue_notify(txq(2));
    EXPECT_EQ(b[2].output, "quiet");
    EXPECT_EQ(q(txq(2)).used_idx(), 1);
    EXPECT_EQ(irq.signals_for(txq(2)), 0u);
}

}  // namespace
}  // namespace kvmsandbox
