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

#include "app/devices.h"
#include "base/result.h"

namespace CLI {
class App;
}

namespace kvmsandbox::cli {

// The plan's types live with the launcher; the parsers below fill them.
using app::DevicePlan;
using app::DiskSpec;
using app::format_ipv4;
using app::GuestNet;
using app::Ipv4Cidr;
using app::kUserNetDns;
using app::kUserNetGateway;
using app::kUserNetGuest;
using app::NetMode;
using app::PortForward;

// What the user typed, as strings (CLI11 fills this).
struct DeviceArgs {
    std::string net = "none";
    std::vector<std::string> publish;
    std::string ip, gateway, dns;
    std::vector<std::string> disks;
    bool rng = true;
};

Result<std::array<uint8_t, 4>> parse_ipv4(std::string_view text);
Result<Ipv4Cidr> parse_cidr(std::string_view text);
// "HOSTPORT:GUESTPORT", "ADDR:HOSTPORT:GUESTPORT", each optionally "/tcp" or "/udp".
Result<PortForward> parse_publish(std::string_view text);
// "FILE" or "FILE,ro" (also "FILE,rw").
Result<DiskSpec> parse_disk(std::string_view text);
Result<DevicePlan> plan_devices(const DeviceArgs& args);

// Registers --net, --publish, --ip, --gateway, --dns, --disk and --no-rng.
// `default_net` is what --net means when not given.
void add_device_options(CLI::App& app, DeviceArgs& args, const std::string& default_net);

}  // namespace kvmsandbox::cli
