#include "cli/device_options.h"

#include <charconv>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

namespace kvmsandbox::cli {

namespace {

Result<unsigned> parse_uint(std::string_view s, unsigned max, std::string_view what) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v > max)
        return failf("{} '{}' is not a number from 0 to {}", what, s, max);
    return v;
}

Result<uint16_t> parse_port(std::string_view s, std::string_view what) {
    KS_TRY_ASSIGN(auto v, parse_uint(s, 65535, what));
    if (v == 0) return failf("{} must not be 0", what);
    return static_cast<uint16_t>(v);
}

}  // namespace

Result<std::array<uint8_t, 4>> parse_ipv4(std::string_view text) {
    std::array<uint8_t, 4> out{};
    std::string_view rest = text;
    for (int i = 0; i < 4; ++i) {
        size_t dot = i < 3 ? rest.find('.') : rest.size();
        if (dot == std::string_view::npos) return failf("'{}' is not an IPv4 address", text);
        std::string_view part = rest.substr(0, dot);
        // No leading zeros: "010" means octal to some tools and decimal to others.
        if (part.size() > 1 && part[0] == '0') return failf("'{}' is not an IPv4 address", text);
        auto v = parse_uint(part, 255, "address byte");
        if (!v) return failf("'{}' is not an IPv4 address", text);
        out[static_cast<size_t>(i)] = static_cast<uint8_t>(*v);
        rest = i < 3 ? rest.substr(dot + 1) : std::string_view{};
    }
    return out;
}

Result<Ipv4Cidr> parse_cidr(std::string_view text) {
    size_t slash = text.find('/');
    if (slash == std::string_view::npos)
        return failf("'{}' needs a prefix length, e.g. 192.168.7.2/24", text);
    KS_TRY_ASSIGN(auto addr, parse_ipv4(text.substr(0, slash)));
    KS_TRY_ASSIGN(auto prefix, parse_uint(text.substr(slash + 1), 32, "prefix length"));
    if (prefix == 0) return failf("'{}': a prefix length of 0 leaves no network", text);
    return Ipv4Cidr{addr, prefix};
}

Result<PortForward> parse_publish(std::string_view text) {
    PortForward f;
    std::string_view spec = text;
    if (size_t slash = spec.rfind('/'); slash != std::string_view::npos) {
        std::string_view proto = spec.substr(slash + 1);
        if (proto == "udp")
            f.udp = true;
        else if (proto != "tcp")
            return failf("--publish {}: protocol must be tcp or udp", text);
        spec = spec.substr(0, slash);
    }
    std::vector<std::string_view> parts;
    while (true) {
        size_t colon = spec.find(':');
        parts.push_back(spec.substr(0, colon));
        if (colon == std::string_view::npos) break;
        spec = spec.substr(colon + 1);
    }
    if (parts.size() != 2 && parts.size() != 3)
        return failf("--publish {}: expected HOSTPORT:GUESTPORT or ADDR:HOSTPORT:GUESTPORT", text);
    if (parts.size() == 3) {
        auto a = parse_ipv4(parts[0]);
        if (!a) return failf("--publish {}: {}", text, a.error().message);
        f.host_addr = format_ipv4(*a);
        parts.erase(parts.begin());
    }
    auto hp = parse_port(parts[0], "host port");
    if (!hp) return failf("--publish {}: {}", text, hp.error().message);
    auto gp = parse_port(parts[1], "guest port");
    if (!gp) return failf("--publish {}: {}", text, gp.error().message);
    f.host_port = *hp;
    f.guest_port = *gp;
    return f;
}

Result<DiskSpec> parse_disk(std::string_view text) {
    DiskSpec d;
    std::string_view path = text;
    if (size_t comma = text.rfind(','); comma != std::string_view::npos) {
        std::string_view opt = text.substr(comma + 1);
        if (opt == "ro")
            d.read_only = true;
        else if (opt != "rw")
            return failf("--disk {}: unknown option '{}' (FILE, FILE,ro or FILE,rw)", text, opt);
        path = text.substr(0, comma);
    }
    if (path.empty()) return failf("--disk {}: no file name", text);
    d.path = std::string(path);
    return d;
}

Result<DevicePlan> plan_devices(const DeviceArgs& args) {
    DevicePlan plan;
    plan.rng = args.rng;
    if (args.net == "none") {
        plan.net = NetMode::None;
    } else if (args.net == "user") {
        plan.net = NetMode::User;
    } else if (args.net.starts_with("tap:")) {
        plan.net = NetMode::Tap;
        plan.tap_name = args.net.substr(4);
        // IFNAMSIZ is 16 with the NUL; the kernel would truncate silently.
        if (plan.tap_name.empty() || plan.tap_name.size() > 15 ||
            plan.tap_name.find('/') != std::string::npos)
            return failf("--net {}: not a valid interface name", args.net);
    } else {
        return failf("--net {}: expected none, user or tap:IFNAME", args.net);
    }

    for (const auto& p : args.publish) {
        KS_TRY_ASSIGN(auto f, parse_publish(p));
        if (plan.net != NetMode::User)
            return failf("--publish needs --net user (a tap's traffic is routed by the host)");
        for (const auto& other : plan.forwards)
            if (other.udp == f.udp && other.host_port == f.host_port &&
                other.host_addr == f.host_addr)
                return failf("--publish {}: host port {} is published twice", p, f.host_port);
        plan.forwards.push_back(f);
    }

    const bool any_ip = !args.ip.empty() || !args.gateway.empty() || !args.dns.empty();
    if (plan.net == NetMode::None && any_ip)
        return failf("--ip, --gateway and --dns need --net user or --net tap:IFNAME");
    if (plan.net == NetMode::User) {
        // slirp only routes its own network, so its layout is not negotiable.
        if (any_ip)
            return failf(
                "--ip, --gateway and --dns are for --net tap; --net user gives the guest "
                "10.0.2.15/24, the host at 10.0.2.2 and DNS at 10.0.2.3");
        plan.guest_net = GuestNet{Ipv4Cidr{kUserNetGuest, 24}, kUserNetGateway, kUserNetDns};
    }
    if (!args.ip.empty()) {
        auto c = parse_cidr(args.ip);
        if (!c) return failf("--ip: {}", c.error().message);
        if (!plan.guest_net) plan.guest_net = GuestNet{};
        plan.guest_net->address = *c;
    } else if (plan.net == NetMode::Tap && any_ip) {
        return failf("--gateway and --dns with a tap need --ip too");
    }
    if (!args.gateway.empty()) {
        auto a = parse_ipv4(args.gateway);
        if (!a) return failf("--gateway: {}", a.error().message);
        plan.guest_net->gateway = *a;
    }
    if (!args.dns.empty()) {
        auto a = parse_ipv4(args.dns);
        if (!a) return failf("--dns: {}", a.error().message);
        plan.guest_net->dns = *a;
    }

    for (const auto& d : args.disks) {
        KS_TRY_ASSIGN(auto spec, parse_disk(d));
        plan.disks.push_back(spec);
    }
    // virtio-blk names disks vda..vdz in probe order; beyond that the guest
    // gets vdaa.., which is fine, but nobody needs more.
    if (plan.disks.size() > 26) return failf("at most 26 --disk options");
    return plan;
}

void add_device_options(CLI::App& app, DeviceArgs& args, const std::string& default_net) {
    args.net = default_net;
    app.add_option("--net", args.net,
                   "Network: none, user (NAT through libslirp; the host is 10.0.2.2) or "
                   "tap:IFNAME (default " +
                       default_net + ")");
    app.add_option("--publish", args.publish,
                   "With --net user: forward [ADDR:]HOSTPORT:GUESTPORT[/udp] to the guest "
                   "(repeatable)")
        ->allow_extra_args(false);
    app.add_option("--ip", args.ip, "With --net tap: the guest's address, ADDR/PREFIX");
    app.add_option("--gateway", args.gateway, "With --net tap: the guest's default gateway");
    app.add_option("--dns", args.dns, "With --net tap: the guest's name server");
    app.add_option("--disk", args.disks,
                   "Add a virtio-blk disk: a raw image FILE[,ro] (repeatable)")
        ->allow_extra_args(false);
    app.add_flag("--rng,!--no-rng", args.rng,
                 "A virtio-rng device fed by getrandom() (default on)");
}

}  // namespace kvmsandbox::cli
