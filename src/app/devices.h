// The optional devices of a VM (virtio-rng, virtio-blk disks, virtio-net with
// a slirp or tap backend) as a plan: what the user asked for, checked. The
// launcher creates them on a Machine; the sandbox also needs the guest
// modules they take and what guest-init must configure.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/worker_pool.h"
#include "protocol/guest_config.h"
#include "vmm/machine.h"

namespace kvmsandbox::app {

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

std::string format_ipv4(const std::array<uint8_t, 4>& a);

// The guest kernel modules the plan's devices need (besides the sandbox's).
std::vector<std::string> device_modules(const DevicePlan& plan);

// The "net" record for guest-init, when the guest has an interface to set up.
std::optional<GuestRunSpec::Net> guest_net_spec(const DevicePlan& plan);

// Creates the plan's devices on `m` (before it runs). `pool` runs the disks'
// file I/O and must outlive the machine's run.
Result<void> attach_devices(Machine& m, const DevicePlan& plan, WorkerPool& pool);

}  // namespace kvmsandbox::app
