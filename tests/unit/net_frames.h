// Test helpers for the network tests: building and picking apart Ethernet,
// ARP, IPv4, UDP, TCP and ICMP frames the way a guest's stack would, with
// real checksums (slirp verifies them).
#pragma once

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace kvmsandbox::netf {

using Mac = std::array<uint8_t, 6>;
inline constexpr Mac kGuestMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
inline constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr uint16_t kEthIpv4 = 0x0800, kEthArp = 0x0806;
inline constexpr uint8_t kProtoIcmp = 1, kProtoTcp = 6, kProtoUdp = 17;
inline constexpr uint8_t kTcpFin = 1, kTcpSyn = 2, kTcpRst = 4, kTcpAck = 16;

// Host-order IPv4 address from a dotted quad.
inline uint32_t ip(const char* s) {
    in_addr a{};
    inet_pton(AF_INET, s, &a);
    return ntohl(a.s_addr);
}

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}
inline void put32(Bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v >> 16));
    put16(b, static_cast<uint16_t>(v));
}
inline uint16_t get16(std::span<const uint8_t> b, size_t at) {
    return static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
}
inline uint32_t get32(std::span<const uint8_t> b, size_t at) {
    return uint32_t{get16(b, at)} << 16 | get16(b, at + 2);
}
inline void set16(std::span<uint8_t> b, size_t at, uint16_t v) {
    b[at] = static_cast<uint8_t>(v >> 8);
    b[at + 1] = static_cast<uint8_t>(v);
}

// Ones' complement sum of `b` added to `sum`, not folded.
inline uint64_t sum16(std::span<const uint8_t> b, uint64_t sum = 0) {
    size_t i = 0;
    for (; i + 1 < b.size(); i += 2) sum += get16(b, i);
    if (i < b.size()) sum += static_cast<uint32_t>(b[i] << 8);
    return sum;
}
inline uint16_t fold(uint64_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(sum);
}
inline uint16_t checksum(std::span<const uint8_t> b, uint64_t sum = 0) {
    return static_cast<uint16_t>(~fold(sum16(b, sum)));
}
inline uint64_t pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, size_t len) {
    return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

inline Bytes eth(const Mac& dst, const Mac& src, uint16_t type, std::span<const uint8_t> payload) {
    Bytes b(dst.begin(), dst.end());
    b.insert(b.end(), src.begin(), src.end());
    put16(b, type);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

inline Bytes arp(uint16_t op, const Mac& sha, uint32_t spa, const Mac& tha, uint32_t tpa) {
    Bytes b;
    put16(b, 1);       // Ethernet
    put16(b, 0x0800);  // IPv4
    b.push_back(6);
    b.push_back(4);
    put16(b, op);
    b.insert(b.end(), sha.begin(), sha.end());
    put32(b, spa);
    b.insert(b.end(), tha.begin(), tha.end());
    put32(b, tpa);
    return eth(op == 1 ? kBroadcast : tha, sha, kEthArp, b);
}
inline Bytes arp_request(const Mac& sha, uint32_t spa, uint32_t tpa) {
    return arp(1, sha, spa, Mac{}, tpa);
}

inline Bytes ipv4(uint32_t src, uint32_t dst, uint8_t proto, std::span<const uint8_t> payload) {
    Bytes b;
    b.push_back(0x45);
    b.push_back(0);
    put16(b, static_cast<uint16_t>(20 + payload.size()));
    put16(b, 0x1234);  // id
    put16(b, 0x4000);  // DF
    b.push_back(64);
    b.push_back(proto);
    put16(b, 0);
    put32(b, src);
    put32(b, dst);
    set16(b, 10, checksum(b));
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

// A UDP datagram; `partial` leaves the pseudo-header sum in the checksum
// field, as a driver asking for checksum offload does.
inline Bytes udp(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                 std::span<const uint8_t> data, bool partial = false) {
    Bytes u;
    put16(u, sport);
    put16(u, dport);
    put16(u, static_cast<uint16_t>(8 + data.size()));
    put16(u, 0);
    u.insert(u.end(), data.begin(), data.end());
    const uint64_t ps = pseudo_sum(src, dst, kProtoUdp, u.size());
    uint16_t c = partial ? fold(ps) : checksum(u, ps);
    if (!partial && c == 0) c = 0xffff;
    set16(u, 6, c);
    return ipv4(src, dst, kProtoUdp, u);
}

struct TcpSeg {
    uint16_t sport = 0, dport = 0;
    uint32_t seq = 0, ack = 0;
    uint8_t flags = 0;
    uint16_t window = 65535;
};
inline Bytes tcp(uint32_t src, uint32_t dst, const TcpSeg& s, std::span<const uint8_t> data = {},
                 bool partial = false) {
    Bytes t;
    put16(t, s.sport);
    put16(t, s.dport);
    put32(t, s.seq);
    put32(t, s.ack);
    t.push_back(0x50);  // 20-byte header
    t.push_back(s.flags);
    put16(t, s.window);
    put16(t, 0);
    put16(t, 0);
    t.insert(t.end(), data.begin(), data.end());
    const uint64_t ps = pseudo_sum(src, dst, kProtoTcp, t.size());
    set16(t, 16, partial ? fold(ps) : checksum(t, ps));
    return ipv4(src, dst, kProtoTcp, t);
}

inline Bytes icmp_echo(uint32_t src, uint32_t dst, uint16_t id, uint16_t seq,
                       std::string_view data) {
    Bytes i{8, 0, 0, 0};
    put16(i, id);
    put16(i, seq);
    i.insert(i.end(), data.begin(), data.end());
    set16(i, 2, checksum(i));
    return ipv4(src, dst, kProtoIcmp, i);
}

// Pieces of a received Ethernet frame (nullopt when it is not that kind).
inline uint16_t ethertype(std::span<const uint8_t> f) {
    return f.size() >= 14 ? get16(f, 12) : 0;
}
struct Ip4 {
    uint32_t src, dst;
    uint8_t proto;
    std::span<const uint8_t> payload;
    bool header_ok;
};
inline std::optional<Ip4> parse_ipv4(std::span<const uint8_t> f) {
    if (ethertype(f) != kEthIpv4 || f.size() < 34) return std::nullopt;
    auto ip = f.subspan(14);
    const size_t ihl = (ip[0] & 0xf) * 4u;
    const size_t total = get16(ip, 2);
    if (ihl < 20 || total < ihl || total > ip.size()) return std::nullopt;
    return Ip4{get32(ip, 12), get32(ip, 16), ip[9], ip.subspan(ihl, total - ihl),
               checksum(ip.first(ihl)) == 0};
}
struct Tcp {
    TcpSeg seg;
    std::span<const uint8_t> data;
    bool checksum_ok;
};
inline std::optional<Tcp> parse_tcp(std::span<const uint8_t> f) {
    auto ip = parse_ipv4(f);
    if (!ip || ip->proto != kProtoTcp || ip->payload.size() < 20) return std::nullopt;
    auto t = ip->payload;
    Tcp r;
    r.seg.sport = get16(t, 0);
    r.seg.dport = get16(t, 2);
    r.seg.seq = get32(t, 4);
    r.seg.ack = get32(t, 8);
    r.seg.flags = t[13];
    r.seg.window = get16(t, 14);
    const size_t off = (t[12] >> 4) * 4u;
    if (off < 20 || off > t.size()) return std::nullopt;
    r.data = t.subspan(off);
    r.checksum_ok = checksum(t, pseudo_sum(ip->src, ip->dst, kProtoTcp, t.size())) == 0;
    return r;
}

}  // namespace kvmsandbox::netf
