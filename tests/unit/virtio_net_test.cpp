#include "virtio/net/net.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fake_driver.h"
#include "net_frames.h"

namespace kvmsandbox {
namespace {

using fake::DriverQueue;
using fake::FakeGuest;
using fake::FakeInterrupt;
using fake::Seg;
using N = VirtioNet;
using netf::Bytes;

constexpr VirtioNet::Mac kMac = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

// A backend with a scripted receive side: frames pushed by the test wait in
// a bounded queue, like slirp's; what the device sends is recorded.
class FakeBackend : public NetBackend {
  public:
    FakeBackend(bool vnet, size_t limit) : vnet_(vnet), limit_(limit) {
        ev_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    }
    std::string kind() const override { return "fake"; }
    bool vnet_hdr() const override { return vnet_; }
    std::optional<uint16_t> mtu() const override {
        return vnet_ ? std::nullopt : std::optional<uint16_t>(1500);
    }
    Result<void> set_offloads(const net::GuestOffloads& o) override {
        std::lock_guard lock(mu_);
        offloads_ = o;
        ++offload_calls_;
        if (refuse_offloads_) return fail("offloads refused");
        return {};
    }
    bool send(std::span<const uint8_t> frame) override {
        std::lock_guard lock(mu_);
        sent_.emplace_back(frame.begin(), frame.end());
        return true;
    }
    int rx_fd() const override { return ev_.get(); }
    size_t recv(std::span<uint8_t> buf) override {
        std::lock_guard lock(mu_);
        if (rx_.empty()) return 0;
        Bytes f = std::move(rx_.front());
        rx_.pop_front();
        if (rx_.empty()) {
            uint64_t v;
            [[maybe_unused]] auto n = ::read(ev_.get(), &v, sizeof(v));
        }
        EXPECT_LE(f.size(), buf.size());
        std::memcpy(buf.data(), f.data(), f.size());
        return f.size();
    }
    uint64_t rx_dropped() const override { return dropped_.load(); }

    void push(Bytes f) {
        std::lock_guard lock(mu_);
        if (rx_.size() >= limit_) {
            ++dropped_;
            return;
        }
        rx_.push_back(std::move(f));
        if (rx_.size() == 1) {
            const uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(ev_.get(), &one, sizeof(one));
        }
    }
    std::vector<Bytes> sent() {
        std::lock_guard lock(mu_);
        return sent_;
    }
    size_t pending() {
        std::lock_guard lock(mu_);
        return rx_.size();
    }
    net::GuestOffloads offloads() {
        std::lock_guard lock(mu_);
        return offloads_;
    }
    void refuse_offloads() {
        std::lock_guard lock(mu_);
        refuse_offloads_ = true;
    }

  private:
    const bool vnet_;
    const size_t limit_;
    UniqueFd ev_;
    std::mutex mu_;
    std::deque<Bytes> rx_;
    std::vector<Bytes> sent_;
    net::GuestOffloads offloads_;
    int offload_calls_ = 0;
    bool refuse_offloads_ = false;
    std::atomic<uint64_t> dropped_{0};
};

// virtio_net_hdr_v1 as a driver writes it.
Bytes hdr(uint8_t flags = 0, uint8_t gso = 0, uint16_t gso_size = 0, uint16_t csum_start = 0,
          uint16_t csum_offset = 0) {
    Bytes h(12, 0);
    h[0] = flags;
    h[1] = gso;
    h[4] = static_cast<uint8_t>(gso_size);
    h[5] = static_cast<uint8_t>(gso_size >> 8);
    h[6] = static_cast<uint8_t>(csum_start);
    h[7] = static_cast<uint8_t>(csum_start >> 8);
    h[8] = static_cast<uint8_t>(csum_offset);
    h[9] = static_cast<uint8_t>(csum_offset >> 8);
    return h;
}
Bytes cat(const Bytes& a, const Bytes& b) {
    Bytes r = a;
    r.insert(r.end(), b.begin(), b.end());
    return r;
}
// An Ethernet frame of exactly `len` bytes with a recognisable pattern.
Bytes pattern_frame(size_t len, uint8_t seed = 0) {
    Bytes f = netf::eth(netf::kGuestMac, kMac, 0x88b5, Bytes{});
    while (f.size() < len) f.push_back(static_cast<uint8_t>(f.size() * 7 + seed));
    return f;
}
uint16_t le16(const Bytes& b, size_t at) {
    return static_cast<uint16_t>(b[at] | b[at + 1] << 8);
}

const uint32_t kGuestIp = netf::ip("10.0.2.15");
const uint32_t kHostIp = netf::ip("10.0.2.2");

class VirtioNetTest : public ::testing::Test {
  protected:
    void make(bool vnet, size_t limit = 1024) {
        auto b = std::make_unique<FakeBackend>(vnet, limit);
        be = b.get();
        auto d = VirtioNet::create(std::move(b), kMac);
        ASSERT_TRUE(d.has_value()) << d.error().message;
        dev = std::move(*d);
    }
    void activate(uint64_t features) {
        SplitQueue* qs[] = {rxq.ptr(), txq.ptr()};
        auto r = dev->activate(virtio::bit(VIRTIO_F_VERSION_1) | features, qs, irq);
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }
    uint64_t counter(const std::string& name) {
        for (auto& [k, v] : dev->counters())
            if (k == name) return v;
        ADD_FAILURE() << "no counter " << name;
        return 0;
    }
    // Sends one frame (header + frame) as a single readable buffer.
    void transmit(const Bytes& data) {
        txq.add_out(data);
        dev->queue_notify(N::kTxQueue);
    }
    // Waits until `n` receive chains came back in all.
    std::vector<fake::Used> wait_rx(size_t n) {
        std::vector<fake::Used> got;
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (got.size() < n && std::chrono::steady_clock::now() < end) {
            auto u = rxq.collect_used();
            got.insert(got.end(), u.begin(), u.end());
            if (got.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        EXPECT_EQ(got.size(), n);
        return got;
    }
    // What the device stored in a receive chain, without the vnet header.
    Bytes payload(const fake::Used& u) {
        Bytes w = u.written(g);
        return w.size() < 12 ? Bytes{} : Bytes(w.begin() + 12, w.end());
    }
    bool wait_for(const std::function<bool()>& cond) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!cond()) {
            if (std::chrono::steady_clock::now() > end) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }

    FakeGuest g{8 << 20};
    DriverQueue rxq{g, N::kQueueSize, N::kQueueSize};
    DriverQueue txq{g, N::kQueueSize, N::kQueueSize};
    FakeInterrupt irq;
    FakeBackend* be = nullptr;
    std::unique_ptr<VirtioNet> dev;  // destroyed first: stops using the queues
};

// ---- identity, features, config ---------------------------------------------

TEST_F(VirtioNetTest, FeaturesForPlainBackend) {
    make(false);
    EXPECT_EQ(dev->device_type(), VIRTIO_ID_NET);
    EXPECT_EQ(dev->name(), "net");
    EXPECT_EQ(dev->num_queues(), 2);
    EXPECT_EQ(dev->queue_max_size(0), 256);
    EXPECT_EQ(dev->queue_max_size(1), 256);
    const uint64_t f = dev->device_features();
    EXPECT_EQ(f, virtio::bit(VIRTIO_NET_F_MAC) | virtio::bit(VIRTIO_NET_F_STATUS) |
                     virtio::bit(VIRTIO_NET_F_MRG_RXBUF) | virtio::bit(VIRTIO_NET_F_CSUM) |
                     virtio::bit(VIRTIO_NET_F_GUEST_CSUM) | virtio::bit(VIRTIO_NET_F_MTU));
    // No segmentation offloads without a vnet header, no control queue.
    EXPECT_EQ(f & (virtio::bit(VIRTIO_NET_F_HOST_TSO4) | virtio::bit(VIRTIO_NET_F_HOST_TSO6) |
                   virtio::bit(VIRTIO_NET_F_GUEST_TSO4) | virtio::bit(VIRTIO_NET_F_GUEST_TSO6) |
                   virtio::bit(VIRTIO_NET_F_CTRL_VQ) | virtio::bit(VIRTIO_NET_F_GUEST_UFO) |
                   virtio::bit(VIRTIO_NET_F_HOST_UFO)),
              0u);
    EXPECT_EQ(virtio::bit(VIRTIO_NET_F_MRG_RXBUF), 1ull << 15);
    EXPECT_EQ(virtio::bit(VIRTIO_NET_F_STATUS), 1ull << 16);
}

TEST_F(VirtioNetTest, FeaturesForVnetBackend) {
    make(true);
    const uint64_t f = dev->device_features();
    const uint64_t tso = virtio::bit(VIRTIO_NET_F_HOST_TSO4) | virtio::bit(VIRTIO_NET_F_HOST_TSO6) |
                         virtio::bit(VIRTIO_NET_F_HOST_ECN) | virtio::bit(VIRTIO_NET_F_GUEST_TSO4) |
                         virtio::bit(VIRTIO_NET_F_GUEST_TSO6) | virtio::bit(VIRTIO_NET_F_GUEST_ECN);
    EXPECT_EQ(f, virtio::bit(VIRTIO_NET_F_MAC) | virtio::bit(VIRTIO_NET_F_STATUS) |
                     virtio::bit(VIRTIO_NET_F_MRG_RXBUF) | virtio::bit(VIRTIO_NET_F_CSUM) |
                     virtio::bit(VIRTIO_NET_F_GUEST_CSUM) | tso);
    EXPECT_EQ(f & (virtio::bit(VIRTIO_NET_F_CTRL_VQ) | virtio::bit(VIRTIO_NET_F_GUEST_UFO) |
                   virtio::bit(VIRTIO_NET_F_HOST_UFO) | virtio::bit(VIRTIO_NET_F_MTU)),
              0u);
}

TEST_F(VirtioNetTest, OffloadsFollowNegotiation) {
    make(true);
    activate(virtio::bit(VIRTIO_NET_F_GUEST_CSUM) | virtio::bit(VIRTIO_NET_F_GUEST_TSO4) |
             virtio::bit(VIRTIO_NET_F_GUEST_ECN));
    auto o = be->offloads();
    EXPECT_TRUE(o.csum);
    EXPECT_TRUE(o.tso4);
    EXPECT_FALSE(o.tso6);
    EXPECT_TRUE(o.ecn);
    dev->reset();
    // TSO without partial checksums is not a thing: not passed on.
    activate(virtio::bit(VIRTIO_NET_F_GUEST_TSO4) | virtio::bit(VIRTIO_NET_F_GUEST_TSO6));
    o = be->offloads();
    EXPECT_FALSE(o.csum);
    EXPECT_FALSE(o.tso4);
    EXPECT_FALSE(o.tso6);
    EXPECT_FALSE(o.ecn);
}

TEST_F(VirtioNetTest, ActivateFailsWhenBackendRefusesOffloads) {
    make(true);
    be->refuse_offloads();
    SplitQueue* qs[] = {rxq.ptr(), txq.ptr()};
    auto r = dev->activate(virtio::bit(VIRTIO_F_VERSION_1) | virtio::bit(VIRTIO_NET_F_GUEST_CSUM),
                           qs, irq);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("offloads refused"), std::string::npos);
    SplitQueue* one[] = {rxq.ptr(), nullptr};
    EXPECT_FALSE(dev->activate(virtio::bit(VIRTIO_F_VERSION_1), one, irq).has_value());
}

TEST_F(VirtioNetTest, ConfigSpace) {
    make(false);
    EXPECT_EQ(dev->config_size(), 12u);
    Bytes cfg(12, 0xaa);
    dev->read_config(0, cfg);
    EXPECT_TRUE(std::equal(kMac.begin(), kMac.end(), cfg.begin()));
    EXPECT_EQ(le16(cfg, 6), VIRTIO_NET_S_LINK_UP);
    EXPECT_EQ(le16(cfg, 10), 1500);
    // Byte-wise and partial reads see the same fields.
    uint8_t b = 0;
    dev->read_config(5, std::span<uint8_t>(&b, 1));
    EXPECT_EQ(b, kMac[5]);
    uint8_t two[2] = {0xaa, 0xaa};
    dev->read_config(6, two);
    EXPECT_EQ(two[0], 1);
    EXPECT_EQ(two[1], 0);
    // Writes change nothing.
    uint8_t zeros[6] = {};
    dev->write_config(0, zeros);
    dev->read_config(0, cfg);
    EXPECT_TRUE(std::equal(kMac.begin(), kMac.end(), cfg.begin()));
}

// ---- transmit ---------------------------------------------------------------

TEST_F(VirtioNetTest, TxStripsHeaderForPlainBackend) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_CSUM) | virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    const Bytes frame = pattern_frame(200);
    // Header and frame in separate buffers, the frame split once more.
    Bytes h = hdr();
    txq.add_out_pieces({std::string(h.begin(), h.end()),
                        std::string(frame.begin(), frame.begin() + 50),
                        std::string(frame.begin() + 50, frame.end())});
    dev->queue_notify(N::kTxQueue);
    auto used = txq.collect_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].len, 0u);
    EXPECT_EQ(irq.signals_for(N::kTxQueue), 1u);
    auto sent = be->sent();
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0], frame);
    EXPECT_EQ(counter("tx_packets"), 1u);
    EXPECT_EQ(counter("tx_bytes"), 200u);
    EXPECT_EQ(counter("tx_dropped"), 0u);
}

TEST_F(VirtioNetTest, TxPassesHeaderToVnetBackend) {
    make(true);
    activate(virtio::bit(VIRTIO_NET_F_CSUM) | virtio::bit(VIRTIO_NET_F_HOST_TSO4));
    Bytes frame = netf::eth(
        kMac, netf::kGuestMac, netf::kEthIpv4,
        netf::tcp(kGuestIp, kHostIp, {1000, 80, 1, 0, netf::kTcpAck}, Bytes(3000, 'x'), true));
    Bytes h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16);
    h[10] = 7;  // num_buffers: meaningless on transmit, not passed on
    transmit(cat(h, frame));
    auto sent = be->sent();
    ASSERT_EQ(sent.size(), 1u);
    Bytes want =
        cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16), frame);
    EXPECT_EQ(sent[0], want);
    // The checksum is the host kernel's job there: untouched.
    EXPECT_EQ(Bytes(sent[0].begin() + 12, sent[0].end()), frame);
    EXPECT_EQ(counter("tx_packets"), 1u);
}

// Checks that a partial checksum is completed into the right one: the
// result must verify over the pseudo-header and equal the checksum a full
// software computation gives.
void expect_completed(const Bytes& sent, const Bytes& full, size_t field) {
    ASSERT_EQ(sent.size(), full.size());
    EXPECT_EQ(netf::get16(sent, field), netf::get16(full, field));
    EXPECT_EQ(sent, full);
    auto ip = netf::parse_ipv4(sent);
    ASSERT_TRUE(ip.has_value());
    EXPECT_EQ(netf::checksum(ip->payload,
                             netf::pseudo_sum(ip->src, ip->dst, ip->proto, ip->payload.size())),
              0);
}

TEST_F(VirtioNetTest, TxCompletesPartialUdpChecksum) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_CSUM));
    const Bytes data = {'h', 'e', 'l', 'l', 'o', ',', ' ', 'w', 'o', 'r', 'l', 'd', '!'};
    const Bytes partial = netf::eth(kMac, netf::kGuestMac, netf::kEthIpv4,
                                    netf::udp(kGuestIp, kHostIp, 40000, 53, data, true));
    const Bytes full = netf::eth(kMac, netf::kGuestMac, netf::kEthIpv4,
                                 netf::udp(kGuestIp, kHostIp, 40000, 53, data, false));
    ASSERT_NE(partial, full);
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 34, 6), partial));
    auto sent = be->sent();
    ASSERT_EQ(sent.size(), 1u);
    expect_completed(sent[0], full, 34 + 6);
    // The value computed independently (by a script) for this datagram (10.0.2.15:40000 ->
    // 10.0.2.2:53, "hello, world!").
    EXPECT_EQ(netf::get16(sent[0], 40), 0xe9f1);
}

TEST_F(VirtioNetTest, TxCompletesPartialTcpChecksum) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_CSUM));
    const netf::TcpSeg seg{1234, 8080, 0x01020304, 0x0a0b0c0d, netf::kTcpAck, 29200};
    const Bytes data(1001, 'z');  // odd length: the last byte is padded
    const Bytes partial = netf::eth(kMac, netf::kGuestMac, netf::kEthIpv4,
                                    netf::tcp(kGuestIp, kHostIp, seg, data, true));
    const Bytes full = netf::eth(kMac, netf::kGuestMac, netf::kEthIpv4,
                                 netf::tcp(kGuestIp, kHostIp, seg, data, false));
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 34, 16), partial));
    auto sent = be->sent();
    ASSERT_EQ(sent.size(), 1u);
    expect_completed(sent[0], full, 34 + 16);
}

TEST_F(VirtioNetTest, TxBadHeadersAreDroppedNotFatal) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_CSUM));
    const Bytes frame = pattern_frame(100);
    transmit(
        cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 90, 9), frame));  // field ends past the frame
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0xffff, 0xffff), frame));
    transmit(cat(hdr(VIRTIO_NET_HDR_F_DATA_VALID), frame));  // a device-only flag
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16),
                 frame));                                    // no TSO here
    transmit(cat(hdr(), Bytes(10, 0)));                      // shorter than Ethernet
    transmit(cat(hdr(), Bytes(net::kMaxFrameSize + 1, 0)));  // too big
    EXPECT_EQ(be->sent().size(), 0u);
    EXPECT_EQ(counter("tx_dropped"), 6u);
    EXPECT_EQ(txq.collect_used().size(), 6u);
    EXPECT_EQ(irq.needs_reset(), 0);
    // The largest frame still goes, and the edge of the checksum range is fine.
    transmit(cat(hdr(), Bytes(net::kMaxFrameSize, 1)));
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 90, 8), frame));
    EXPECT_EQ(be->sent().size(), 2u);
    EXPECT_EQ(counter("tx_dropped"), 6u);
}

TEST_F(VirtioNetTest, TxChecksumOffloadNeedsNegotiation) {
    make(false);
    activate(0);
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 34, 6), pattern_frame(100)));
    EXPECT_EQ(be->sent().size(), 0u);
    EXPECT_EQ(counter("tx_dropped"), 1u);
}

TEST_F(VirtioNetTest, TxVnetGsoNeedsItsFeature) {
    make(true);
    activate(virtio::bit(VIRTIO_NET_F_CSUM) | virtio::bit(VIRTIO_NET_F_HOST_TSO4));
    const Bytes frame = pattern_frame(100);
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 1400, 54, 16),
                 frame));  // TSO6 not acked
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
                     1400, 34, 16),
                 frame));
    transmit(cat(hdr(0, VIRTIO_NET_HDR_GSO_TCPV4, 1400), frame));  // no NEEDS_CSUM
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 0, 34, 16),
                 frame));  // no gso_size
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP, 1400, 34, 6), frame));
    EXPECT_EQ(be->sent().size(), 0u);
    EXPECT_EQ(counter("tx_dropped"), 5u);
    transmit(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1400, 34, 16), frame));
    EXPECT_EQ(be->sent().size(), 1u);
}

TEST_F(VirtioNetTest, TxHeaderTooShortNeedsReset) {
    make(false);
    activate(0);
    transmit(Bytes(11, 0));
    EXPECT_EQ(irq.needs_reset(), 1);
    EXPECT_EQ(be->sent().size(), 0u);
    // Stopped: further chains are left alone.
    transmit(cat(hdr(), pattern_frame(60)));
    EXPECT_EQ(be->sent().size(), 0u);
    EXPECT_EQ(txq.collect_used().size(), 0u);
}

TEST_F(VirtioNetTest, TxWritableDescriptorNeedsReset) {
    make(false);
    activate(0);
    const uint64_t a = g.alloc(100);
    g.write(a, cat(hdr(), pattern_frame(60)));
    txq.add_chain({{a, 72, false}, {g.alloc(64), 64, true}});
    dev->queue_notify(N::kTxQueue);
    EXPECT_EQ(irq.needs_reset(), 1);
    EXPECT_EQ(be->sent().size(), 0u);
}

TEST_F(VirtioNetTest, TxDescriptorLoopNeedsReset) {
    make(false);
    activate(0);
    const uint64_t a = g.alloc(100);
    g.write(a, cat(hdr(), pattern_frame(60)));
    txq.write_desc(0, a, 72, VRING_DESC_F_NEXT, 1);
    txq.write_desc(1, a, 72, VRING_DESC_F_NEXT, 0);
    txq.publish(0);
    dev->queue_notify(N::kTxQueue);
    EXPECT_EQ(irq.needs_reset(), 1);
    EXPECT_EQ(be->sent().size(), 0u);
    // After the driver's reset the device works again.
    dev->reset();
    txq.configure();
    activate(0);
    transmit(cat(hdr(), pattern_frame(60)));
    EXPECT_EQ(be->sent().size(), 1u);
}

TEST_F(VirtioNetTest, NotifyBeforeActivationIsIgnored) {
    make(false);
    txq.add_out(cat(hdr(), pattern_frame(60)));
    dev->queue_notify(N::kTxQueue);
    dev->queue_notify(N::kRxQueue);
    EXPECT_EQ(be->sent().size(), 0u);
    EXPECT_EQ(txq.collect_used().size(), 0u);
}

// ---- receive ----------------------------------------------------------------

TEST_F(VirtioNetTest, RxIntoOneBuffer) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_GUEST_CSUM));
    rxq.add_in(2048);
    dev->queue_notify(N::kRxQueue);
    const Bytes frame = pattern_frame(300);
    be->push(frame);
    auto used = wait_rx(1);
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].len, 12u + 300);
    Bytes got = used[0].written(g);
    EXPECT_EQ(got[0], VIRTIO_NET_HDR_F_DATA_VALID);
    EXPECT_EQ(got[1], VIRTIO_NET_HDR_GSO_NONE);
    EXPECT_EQ(le16(got, 10), 1);  // num_buffers
    EXPECT_EQ(Bytes(got.begin() + 12, got.end()), frame);
    EXPECT_TRUE(irq.wait_signals(N::kRxQueue, 1));
    EXPECT_EQ(counter("rx_packets"), 1u);
    EXPECT_EQ(counter("rx_bytes"), 300u);
}

TEST_F(VirtioNetTest, RxWithoutGuestCsumHasNoFlags) {
    make(false);
    activate(0);
    rxq.add_in(2048);
    dev->queue_notify(N::kRxQueue);
    be->push(pattern_frame(60));
    auto used = wait_rx(1);
    ASSERT_EQ(used.size(), 1u);
    Bytes got = used[0].written(g);
    EXPECT_EQ(got[0], 0);
    EXPECT_EQ(le16(got, 10), 1);
}

TEST_F(VirtioNetTest, RxMergeableAcrossThreeChains) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_MRG_RXBUF) | virtio::bit(VIRTIO_NET_F_GUEST_CSUM));
    for (int i = 0; i < 4; ++i) rxq.add_in(1000);
    dev->queue_notify(N::kRxQueue);
    const Bytes frame = pattern_frame(2500, 3);
    be->push(frame);
    auto used = wait_rx(3);
    ASSERT_EQ(used.size(), 3u);
    EXPECT_EQ(used[0].len, 1000u);
    EXPECT_EQ(used[1].len, 1000u);
    EXPECT_EQ(used[2].len, 512u);
    Bytes all;
    for (auto& u : used) {
        Bytes w = u.written(g);
        all.insert(all.end(), w.begin(), w.end());
    }
    EXPECT_EQ(le16(all, 10), 3);  // num_buffers
    EXPECT_EQ(all[0], VIRTIO_NET_HDR_F_DATA_VALID);
    EXPECT_EQ(Bytes(all.begin() + 12, all.end()), frame);
    // The fourth buffer is still the driver's... and takes the next frame.
    be->push(pattern_frame(100, 9));
    auto next = wait_rx(1);
    ASSERT_EQ(next.size(), 1u);
    EXPECT_EQ(le16(next[0].written(g), 10), 1);
    EXPECT_EQ(counter("rx_packets"), 2u);
}

TEST_F(VirtioNetTest, RxMergeableWaitsForEnoughBuffers) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    rxq.add_in(1000);
    dev->queue_notify(N::kRxQueue);
    be->push(pattern_frame(2500));
    ASSERT_TRUE(wait_for([&] { return be->pending() == 0; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(rxq.collect_used().size(), 0u);  // held, not half delivered
    rxq.add_in(1000);
    rxq.add_in(1000);
    dev->queue_notify(N::kRxQueue);
    auto used = wait_rx(3);
    ASSERT_EQ(used.size(), 3u);
    EXPECT_EQ(le16(used[0].written(g), 10), 3);
    EXPECT_EQ(counter("rx_dropped"), 0u);
}

TEST_F(VirtioNetTest, RxTooBigForOneChainIsDroppedWithoutMergeable) {
    make(false);
    activate(0);
    rxq.add_in(512);
    dev->queue_notify(N::kRxQueue);
    be->push(pattern_frame(1000));
    ASSERT_TRUE(wait_for([&] { return counter("rx_dropped") == 1; }));
    EXPECT_EQ(rxq.collect_used().size(), 0u);
    // The buffer stays for the next frame that fits.
    const Bytes small = pattern_frame(400);
    be->push(small);
    auto used = wait_rx(1);
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(payload(used[0]), small);
    EXPECT_EQ(counter("rx_packets"), 1u);
}

TEST_F(VirtioNetTest, RxWithoutBuffersIsBounded) {
    make(false, 16);
    activate(virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    for (int i = 0; i < 100; ++i) be->push(pattern_frame(60, static_cast<uint8_t>(i)));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(be->pending(), 16u);
    EXPECT_EQ(counter("rx_dropped"), 84u);
    EXPECT_EQ(counter("rx_packets"), 0u);
    for (int i = 0; i < 20; ++i) rxq.add_in(256);
    dev->queue_notify(N::kRxQueue);
    auto used = wait_rx(16);
    ASSERT_EQ(used.size(), 16u);
    // The oldest frames survived, in order.
    EXPECT_EQ(payload(used[0]), pattern_frame(60, 0));
    EXPECT_EQ(payload(used[15]), pattern_frame(60, 15));
    EXPECT_EQ(counter("rx_packets"), 16u);
}

TEST_F(VirtioNetTest, RxChainWithReadableBufferNeedsReset) {
    make(false);
    activate(0);
    rxq.add_chain({{g.alloc(64), 64, false}, {g.alloc(1500), 1500, true}});
    dev->queue_notify(N::kRxQueue);
    be->push(pattern_frame(60));
    EXPECT_EQ(irq.needs_reset(), 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(rxq.collect_used().size(), 0u);
}

TEST_F(VirtioNetTest, RxChainSmallerThanHeaderNeedsReset) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    rxq.add_in(8);
    dev->queue_notify(N::kRxQueue);
    EXPECT_EQ(irq.needs_reset(), 1);
}

TEST_F(VirtioNetTest, RxVnetHeaderPassesThroughPerFeatures) {
    make(true);
    activate(virtio::bit(VIRTIO_NET_F_GUEST_CSUM) | virtio::bit(VIRTIO_NET_F_GUEST_TSO4) |
             virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    for (int i = 0; i < 8; ++i) rxq.add_in(4096);
    dev->queue_notify(N::kRxQueue);
    const Bytes frame = pattern_frame(1000);
    Bytes h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16);
    h[10] = 0x55;  // whatever the kernel left there
    be->push(cat(h, frame));
    auto used = wait_rx(1);
    ASSERT_EQ(used.size(), 1u);
    Bytes got = used[0].written(g);
    Bytes want =
        cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16), frame);
    want[10] = 1;
    EXPECT_EQ(got, want);
    // An offload the driver did not take (TSO6) never reaches it.
    be->push(cat(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 1448, 54, 16), frame));
    be->push(cat(hdr(), Bytes(5, 0)));  // runt
    ASSERT_TRUE(wait_for([&] { return counter("rx_dropped") == 2; }));
    EXPECT_EQ(rxq.collect_used().size(), 0u);
}

TEST_F(VirtioNetTest, RxVnetFlagsClearedWithoutGuestCsum) {
    make(true);
    activate(0);
    rxq.add_in(4096);
    dev->queue_notify(N::kRxQueue);
    be->push(cat(hdr(VIRTIO_NET_HDR_F_DATA_VALID), pattern_frame(100)));
    auto used = wait_rx(1);
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].written(g)[0], 0);
}

// ---- reset ------------------------------------------------------------------

TEST_F(VirtioNetTest, ResetDropsHeldFrameAndChains) {
    make(false);
    activate(virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    rxq.add_in(100);
    dev->queue_notify(N::kRxQueue);
    be->push(pattern_frame(1000));  // needs more buffers: held
    ASSERT_TRUE(wait_for([&] { return be->pending() == 0; }));
    dev->reset();
    EXPECT_EQ(counter("rx_dropped"), 1u);
    rxq.configure();
    txq.configure();
    activate(virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    rxq.add_in(2048);
    dev->queue_notify(N::kRxQueue);
    be->push(pattern_frame(500));
    auto used = wait_rx(1);
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].len, 512u);
}

TEST_F(VirtioNetTest, ResetDuringTraffic) {
    make(false, 64);
    std::atomic<bool> stop{false};
    // The network keeps sending while the driver resets the device over and over.
    std::thread net([&] {
        uint8_t i = 0;
        while (!stop.load()) {
            be->push(pattern_frame(60 + i % 1400, i));
            ++i;
            if (i % 32 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    });
    for (int round = 0; round < 50; ++round) {
        activate(round % 2 ? virtio::bit(VIRTIO_NET_F_MRG_RXBUF) : 0);
        for (int i = 0; i < 16; ++i) rxq.add_in(round % 2 ? 700 : 1600);
        for (int i = 0; i < 8; ++i) txq.add_out(cat(hdr(), pattern_frame(100)));
        dev->queue_notify(N::kRxQueue);
        dev->queue_notify(N::kTxQueue);
        std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 5)));
        dev->reset();
        // Nothing touches the rings after reset() returned.
        const uint16_t rx_used = rxq.used_idx(), tx_used = txq.used_idx();
        std::this_thread::sleep_for(std::chrono::microseconds(300));
        EXPECT_EQ(rxq.used_idx(), rx_used);
        EXPECT_EQ(txq.used_idx(), tx_used);
        rxq.configure();
        txq.configure();
    }
    EXPECT_EQ(irq.needs_reset(), 0);
    // Still works afterwards.
    activate(virtio::bit(VIRTIO_NET_F_MRG_RXBUF));
    rxq.add_in(2048);
    dev->queue_notify(N::kRxQueue);
    auto used = wait_rx(1);
    EXPECT_EQ(used.size(), 1u);
    stop.store(true);
    net.join();
    // And goes away cleanly while frames are still pending.
    dev.reset();
}

TEST(VirtioNetCreate, RejectsNoBackend) {
    auto d = VirtioNet::create(nullptr, kMac);
    EXPECT_FALSE(d.has_value());
}

}  // namespace
}  // namespace kvmsandbox
