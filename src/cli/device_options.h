// The device options shared by `kvmsandbox -- CMD` and `kvmsandbox run`
// (--net, --publish, --ip/--gateway/--dns, --disk, --rng), parsed and checked
// before any VM exists so that a typo costs a line, not a boot.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kvmsandbox::cli {

enum class NetMode { None, User, Tap };

struct PortForward {
    bool udp = false;
    std::string host_addr = "127.0.0.1";  // where the host listens
    uint16_t host_port = 0;
    uint16_t guest_port = 0;
    bool operator==(const PortForward&) const = default;
};

struct Ipv4Cidr {
    std::array<uint8_t, 4> addr{};
    unsigned prefix = 24;
    bool operator==(const Ipv4Cidr&) const = default;
};

struct DiskSpec {
    std::string path;
    bool read_only = false;
    bool operator==(const DiskSpec&) const = default;
};

// What the user typed, as strings (CLI11 fills this).
struct DeviceArgs {
    std::string net = "none";
    std::vector<std::string> publish;
    std::string ip, gateway, dns;
    std::vector<std::string> disks;
    bool rng = true;
};

// The guest's interface configuration, handed to guest-init.
struct GuestNet {
    Ipv4Cidr address;
    std::optional<std::array<uint8_t, 4>> gateway;
    std::optional<std::array<uint8_t, 4>> dns;
};

struct DevicePlan {
    NetMode net = NetMode::None;
    std::string tap_name;  // NetMode::Tap
    std::vector<PortForward> forwards;
    // Set whenever the guest has a network interface to configure: user
    // mode always (slirp's defaults unless overridden), tap when --ip is given.
    std::optional<GuestNet> guest_net;
    std::vector<DiskSpec> disks;
    bool rng = true;
};

// slirp's layout: the guest at .15, the gateway (the host's loopback) at .2,
// its DNS proxy at .3 of 10.0.2.0/24.
inline constexpr std::array<uint8_t, 4> kUserNetGuest{10, 0, 2, 15};
inline constexpr std::array<uint8_t, 4> kUserNetGateway{10, 0, 2, 2};
inline constexpr std::array<uint8_t, 4> kUserNetDns{10, 0, 2, 3};

Result<std::array<uint8_t, 4>> parse_ipv4(std::string_view text);
Result<Ipv4Cidr> parse_cidr(std::string_view text);
// "HOSTPORT:GUESTPORT", "ADDR:HOSTPORT:GUESTPORT", each optionally "/tcp" or "/udp".
Result<PortForward> parse_publish(std::string_view text);
// "FILE" or "FILE,ro" (also "FILE,rw").
Result<DiskSpec> parse_disk(std::string_view text);
Result<DevicePlan> plan_devices(const DeviceArgs& args);

std::string format_ipv4(const std::array<uint8_t, 4>& a);

}  // namespace kvmsandbox::cli
