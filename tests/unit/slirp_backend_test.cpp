#include "virtio/net/slirp_backend.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "base/unique_fd.h"
#include "fake_driver.h"
#include "net_frames.h"
#include "virtio/net/net.h"

namespace kvmsandbox {
namespace {

using namespace std::chrono_literals;
using netf::Bytes;
using netf::kGuestMac;

const uint32_t kGuestIp = netf::ip("10.0.2.15");
const uint32_t kHostIp = netf::ip("10.0.2.2");

// A TCP socket listening on 127.0.0.1 (port 0: any free one).
UniqueFd listen_tcp(uint16_t port = 0) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(s.valid());
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(s.get(), 4), 0);
    return s;
}
uint16_t port_of(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}
// A port that was free a moment ago.
uint16_t free_port() {
    UniqueFd s = listen_tcp();
    return port_of(s.get());
}
bool readable(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

// Plays the guest's network stack against a SlirpBackend: sends frames and
// waits for the ones slirp emits, answering slirp's ARP questions about the
// guest on the way.
class SlirpGuest {
  public:
    explicit SlirpGuest(SlirpBackend& b) : b_(b) {}

    void send(const Bytes& f) { ASSERT_TRUE(b_.send(f)); }
    void send_ip(const Bytes& ip) { send(netf::eth(gw_mac_, kGuestMac, netf::kEthIpv4, ip)); }

    // The next frame for which `want` holds; others are skipped.
    std::optional<Bytes> wait(const std::function<bool(const Bytes&)>& want,
                              std::chrono::milliseconds timeout = 10s) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        Bytes buf(net::kVnetHdrSize + net::kMaxFrameSize);
        while (std::chrono::steady_clock::now() < end) {
            if (!readable(b_.rx_fd(), 50ms)) continue;
            for (;;) {
                const size_t n = b_.recv(buf);
                if (n == 0) break;
                Bytes f(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
                answer_arp(f);
                if (want(f)) return f;
            }
        }
        return std::nullopt;
    }

    // Introduces the guest (slirp learns its MAC from the request) and
    // learns the gateway's MAC from the reply.
    void announce() {
        send(netf::arp_request(kGuestMac, kGuestIp, kHostIp));
        auto reply = wait([](const Bytes& f) {
            return netf::ethertype(f) == netf::kEthArp && netf::get16(f, 20) == 2;
        });
        ASSERT_TRUE(reply.has_value()) << "no ARP reply from the gateway";
        std::copy(reply->begin() + 22, reply->begin() + 28, gw_mac_.begin());
    }

    // The next TCP segment for which `want` holds; `frame` keeps the bytes
    // the returned views point into.
    std::optional<netf::Tcp> wait_tcp(const std::function<bool(const netf::Tcp&)>& want,
                                      Bytes& frame) {
        auto f = wait([&](const Bytes& f) {
            auto t = netf::parse_tcp(f);
            return t && want(*t);
        });
        if (!f) return std::nullopt;
        frame = std::move(*f);
        return netf::parse_tcp(frame);
    }

    const netf::Mac& gw_mac() const { return gw_mac_; }

  private:
    void answer_arp(const Bytes& f) {
        if (netf::ethertype(f) != netf::kEthArp || f.size() < 42) return;
        if (netf::get16(f, 20) != 1 || netf::get32(f, 38) != kGuestIp) return;
        netf::Mac sha;
        std::copy(f.begin() + 22, f.begin() + 28, sha.begin());
        b_.send(netf::arp(2, kGuestMac, kGuestIp, sha, netf::get32(f, 28)));
    }

    SlirpBackend& b_;
    netf::Mac gw_mac_{};
};

std::unique_ptr<SlirpBackend> make_slirp(const SlirpConfig& cfg = {}) {
    auto b = SlirpBackend::create(cfg);
    EXPECT_TRUE(b.has_value()) << b.error().message;
    return b ? std::move(*b) : nullptr;
}

TEST(SlirpBackend, Identity) {
    auto b = make_slirp();
    ASSERT_TRUE(b);
    EXPECT_EQ(b->kind(), "slirp");
    EXPECT_FALSE(b->vnet_hdr());
    EXPECT_EQ(b->mtu(), 1500);
    EXPECT_EQ(b->queued_frames(), 0u);
    Bytes buf(net::kVnetHdrSize + net::kMaxFrameSize);
    EXPECT_EQ(b->recv(buf), 0u);
    EXPECT_FALSE(readable(b->rx_fd(), 0ms));
}

TEST(SlirpBackend, AnswersArpForTheGateway) {
    auto b = make_slirp();
    ASSERT_TRUE(b);
    b->send(netf::arp_request(kGuestMac, kGuestIp, kHostIp));
    ASSERT_TRUE(readable(b->rx_fd(), 5000ms));
    Bytes buf(net::kVnetHdrSize + net::kMaxFrameSize);
    const size_t n = b->recv(buf);
    ASSERT_GE(n, 42u);
    Bytes f(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_EQ(netf::ethertype(f), netf::kEthArp);
    EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), f.begin()));  // to us
    EXPECT_EQ(netf::get16(f, 20), 2);                                        // reply
    EXPECT_EQ(netf::get32(f, 28), kHostIp);                                  // 10.0.2.2 is at...
    EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), f.begin() + 32));
    EXPECT_EQ(netf::get32(f, 38), kGuestIp);
    // Drained: no longer readable.
    EXPECT_EQ(b->recv(buf), 0u);
    EXPECT_FALSE(readable(b->rx_fd(), 0ms));
}

TEST(SlirpBackend, AnswersPingToTheGateway) {
    auto b = make_slirp();
    ASSERT_TRUE(b);
    SlirpGuest guest(*b);
    guest.announce();
    guest.send_ip(netf::icmp_echo(kGuestIp, kHostIp, 0x4242, 7, "ping payload"));
    auto reply = guest.wait([](const Bytes& f) {
        auto ip = netf::parse_ipv4(f);
        return ip && ip->proto == netf::kProtoIcmp && ip->payload.size() >= 8 &&
               ip->payload[0] == 0;
    });
    ASSERT_TRUE(reply.has_value());
    auto ip = netf::parse_ipv4(*reply);
    EXPECT_EQ(ip->src, kHostIp);
    EXPECT_EQ(ip->dst, kGuestIp);
    EXPECT_TRUE(ip->header_ok);
    EXPECT_EQ(netf::get16(ip->payload, 4), 0x4242);
    EXPECT_EQ(netf::get16(ip->payload, 6), 7);
    EXPECT_EQ(netf::checksum(ip->payload), 0);
}

TEST(SlirpBackend, TcpConnectToTheHostsLoopback) {
    UniqueFd listener = listen_tcp();
    const uint16_t port = port_of(listener.get());
    auto b = make_slirp();
    ASSERT_TRUE(b);
    SlirpGuest guest(*b);
    guest.announce();

    // SYN to the gateway: slirp connects to 127.0.0.1:port for us.
    const uint16_t sport = 40001;
    guest.send_ip(netf::tcp(kGuestIp, kHostIp, {sport, port, 1000, 0, netf::kTcpSyn, 65535}));
    Bytes frame;
    auto synack = guest.wait_tcp(
        [&](const netf::Tcp& t) { return t.seg.dport == sport && (t.seg.flags & netf::kTcpSyn); },
        frame);
    ASSERT_TRUE(synack.has_value()) << "no SYN-ACK";
    EXPECT_EQ(synack->seg.flags & (netf::kTcpSyn | netf::kTcpAck), netf::kTcpSyn | netf::kTcpAck);
    EXPECT_EQ(synack->seg.sport, port);
    EXPECT_EQ(synack->seg.ack, 1001u);
    EXPECT_TRUE(synack->checksum_ok);
    EXPECT_EQ(netf::parse_ipv4(frame)->src, kHostIp);

    ASSERT_TRUE(readable(listener.get(), 5000ms));
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn.valid());

    // Finish the handshake and move data both ways.
    const uint32_t their = synack->seg.seq + 1;
    const std::string hello = "hello host";
    guest.send_ip(netf::tcp(kGuestIp, kHostIp, {sport, port, 1001, their, netf::kTcpAck, 65535},
                            Bytes(hello.begin(), hello.end())));
    std::string got(64, '\0');
    ASSERT_TRUE(readable(conn.get(), 5000ms));
    const ssize_t n = ::read(conn.get(), got.data(), got.size());
    ASSERT_GT(n, 0);
    EXPECT_EQ(got.substr(0, static_cast<size_t>(n)), hello);

    ASSERT_EQ(::write(conn.get(), "hi guest", 8), 8);
    auto data = guest.wait_tcp(
        [&](const netf::Tcp& t) { return t.seg.dport == sport && !t.data.empty(); }, frame);
    ASSERT_TRUE(data.has_value());
    EXPECT_EQ(std::string(data->data.begin(), data->data.end()), "hi guest");
    EXPECT_EQ(data->seg.seq, their);
    EXPECT_TRUE(data->checksum_ok);
}

TEST(SlirpBackend, HostForwardReachesTheGuest) {
    const uint16_t hport = free_port();
    SlirpConfig cfg;
    cfg.forwards.push_back({false, "127.0.0.1", hport, 8080});
    auto b = make_slirp(cfg);
    ASSERT_TRUE(b);
    SlirpGuest guest(*b);
    guest.announce();

    UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(hport);
    ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);

    Bytes frame;
    auto syn = guest.wait_tcp([](const netf::Tcp& t) { return t.seg.dport == 8080; }, frame);
    ASSERT_TRUE(syn.has_value()) << "no SYN towards the guest";
    EXPECT_EQ(syn->seg.flags & (netf::kTcpSyn | netf::kTcpAck), netf::kTcpSyn);
    EXPECT_TRUE(syn->checksum_ok);
    EXPECT_EQ(netf::parse_ipv4(frame)->dst, kGuestIp);
    EXPECT_TRUE(std::equal(kGuestMac.begin(), kGuestMac.end(), frame.begin()));
}

TEST(SlirpBackend, HostForwardPortInUse) {
    UniqueFd taken = listen_tcp();
    const uint16_t port = port_of(taken.get());
    SlirpConfig cfg;
    cfg.forwards.push_back({false, "127.0.0.1", port, 80});
    auto b = SlirpBackend::create(cfg);
    ASSERT_FALSE(b.has_value());
    EXPECT_EQ(b.error().message,
              "cannot forward host port " + std::to_string(port) + ": address in use");
}

TEST(SlirpBackend, InvalidConfig) {
    SlirpConfig c1;
    c1.guest = "10.0.3.15";
    auto r = SlirpBackend::create(c1);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("not inside 10.0.2.0/24"), std::string::npos)
        << r.error().message;

    SlirpConfig c2;
    c2.dns = "ten.zero";
    r = SlirpBackend::create(c2);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("invalid slirp DNS address 'ten.zero'"), std::string::npos);

    SlirpConfig c3;
    c3.forwards.push_back({false, "localhost", 8080, 80});
    r = SlirpBackend::create(c3);
    ASSERT_FALSE(r.has_value());

    SlirpConfig c4;
    c4.forwards.push_back({true, "127.0.0.1", 0, 80});
    r = SlirpBackend::create(c4);
    ASSERT_FALSE(r.has_value());
}

TEST(SlirpBackend, ReceiveQueueIsBounded) {
    SlirpConfig cfg;
    cfg.max_queued_frames = 4;
    auto b = make_slirp(cfg);
    ASSERT_TRUE(b);
    // Each request is answered at once, from inside send().
    for (int i = 0; i < 10; ++i) b->send(netf::arp_request(kGuestMac, kGuestIp, kHostIp));
    EXPECT_EQ(b->queued_frames(), 4u);
    EXPECT_EQ(b->rx_dropped(), 6u);
    Bytes buf(net::kVnetHdrSize + net::kMaxFrameSize);
    int got = 0;
    while (b->recv(buf) > 0) ++got;
    EXPECT_EQ(got, 4);
}

// The whole path: a driver's frames through VirtioNet into slirp and back,
// with the device completing the TCP checksum the guest left partial (slirp
// drops segments whose checksum is wrong, so the SYN-ACK proves it right).
TEST(SlirpBackend, ThroughVirtioNetWithChecksumOffload) {
    using fake::DriverQueue;
    using N = VirtioNet;
    UniqueFd listener = listen_tcp();
    const uint16_t port = port_of(listener.get());

    fake::FakeGuest g(4 << 20);
    DriverQueue rxq(g, 256, 256), txq(g, 256, 256);
    fake::FakeInterrupt irq;
    auto backend = make_slirp();
    ASSERT_TRUE(backend);
    auto dev = VirtioNet::create(std::move(backend), {0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
    ASSERT_TRUE(dev.has_value());
    SplitQueue* qs[] = {rxq.ptr(), txq.ptr()};
    ASSERT_TRUE((*dev)
                    ->activate(virtio::bit(VIRTIO_F_VERSION_1) | virtio::bit(VIRTIO_NET_F_CSUM) |
                                   virtio::bit(VIRTIO_NET_F_GUEST_CSUM) |
                                   virtio::bit(VIRTIO_NET_F_MRG_RXBUF),
                               qs, irq)
                    .has_value());
    for (int i = 0; i < 32; ++i) rxq.add_in(2048);
    (*dev)->queue_notify(N::kRxQueue);

    auto send = [&](const Bytes& hdr, const Bytes& frame) {
        Bytes all = hdr;
        all.insert(all.end(), frame.begin(), frame.end());
        txq.add_out(all);
        (*dev)->queue_notify(N::kTxQueue);
    };
    // Frames the device delivered, minus the vnet header.
    auto receive = [&](const std::function<bool(const Bytes&)>& want) -> std::optional<Bytes> {
        const auto end = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < end) {
            for (auto& u : rxq.collect_used()) {
                Bytes w = u.written(g);
                EXPECT_EQ(w[0], VIRTIO_NET_HDR_F_DATA_VALID);
                EXPECT_EQ(w[10] | w[11] << 8, 1);
                Bytes f(w.begin() + 12, w.end());
                rxq.add_in(2048);
                (*dev)->queue_notify(N::kRxQueue);
                if (netf::ethertype(f) == netf::kEthArp && netf::get16(f, 20) == 1) {
                    netf::Mac sha;
                    std::copy(f.begin() + 22, f.begin() + 28, sha.begin());
                    send(Bytes(12, 0), netf::arp(2, kGuestMac, kGuestIp, sha, netf::get32(f, 28)));
                    continue;
                }
                if (want(f)) return f;
            }
            std::this_thread::sleep_for(1ms);
        }
        return std::nullopt;
    };

    send(Bytes(12, 0), netf::arp_request(kGuestMac, kGuestIp, kHostIp));
    auto arp = receive([](const Bytes& f) { return netf::ethertype(f) == netf::kEthArp; });
    ASSERT_TRUE(arp.has_value());
    netf::Mac gw;
    std::copy(arp->begin() + 22, arp->begin() + 28, gw.begin());

    Bytes hdr(12, 0);
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[6] = 34;  // csum_start: the TCP header
    hdr[8] = 16;  // csum_offset: its checksum field
    send(hdr, netf::eth(gw, kGuestMac, netf::kEthIpv4,
                        netf::tcp(kGuestIp, kHostIp, {40002, port, 5000, 0, netf::kTcpSyn, 65535},
                                  {}, /*partial=*/true)));
    auto synack = receive([&](const Bytes& f) {
        auto t = netf::parse_tcp(f);
        return t && t->seg.dport == 40002;
    });
    ASSERT_TRUE(synack.has_value()) << "slirp did not accept the offloaded checksum";
    auto t = netf::parse_tcp(*synack);
    EXPECT_EQ(t->seg.flags & (netf::kTcpSyn | netf::kTcpAck), netf::kTcpSyn | netf::kTcpAck);
    EXPECT_EQ(t->seg.ack, 5001u);
    ASSERT_TRUE(readable(listener.get(), 5000ms));

    uint64_t tx = 0, rx = 0;
    for (auto& [k, v] : (*dev)->counters()) {
        if (k == "tx_packets") tx = v;
        if (k == "rx_packets") rx = v;
    }
    EXPECT_GE(tx, 2u);
    EXPECT_GE(rx, 2u);
    *dev = nullptr;  // goes away with a live connection in slirp
}

}  // namespace
}  // namespace kvmsandbox
