// The guest's network interface, configured from the host's "net" record
// before CMD starts: the address, the default route and the name server the
// host chose (slirp's layout for --net user, the user's for a tap).
#pragma once

#include <netinet/in.h>

#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace kvmsandbox::guest_init {

struct NetConfig {
    in_addr address{};
    unsigned prefix = 24;
    std::optional<in_addr> gateway;
    std::optional<in_addr> dns;
};

// "ADDR/PREFIX\nGATEWAY\nDNS"; GATEWAY and DNS may be empty.
std::expected<NetConfig, std::string> parse_net_record(std::string_view value);

// The netmask of a prefix length, in network byte order.
in_addr prefix_netmask(unsigned prefix);

// The first network interface that is not loopback, under SYS_CLASS_NET
// (waits up to timeout_ms for the driver to register it).
std::expected<std::string, std::string> find_interface(const std::string& sys_class_net,
                                                       int timeout_ms);

// Address, netmask, up, and the default route via the gateway.
std::expected<void, std::string> configure_interface(const std::string& ifname,
                                                     const NetConfig& cfg);

// What /etc/resolv.conf says for `dns`.
std::string resolv_conf_text(in_addr dns);

// Makes /etc/resolv.conf (in the current root) name `dns`: the host's /etc is
// a read-only share, so a file under /run is bind-mounted over it, or, when
// the host's resolv.conf is a symlink into /run that does not exist in the
// guest (systemd-resolved), written where the link points.
std::expected<void, std::string> install_resolv_conf(in_addr dns);

}  // namespace kvmsandbox::guest_init
