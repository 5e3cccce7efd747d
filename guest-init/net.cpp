#include "guest-init/net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/unique_fd.h"
#include "guest-init/io.h"
#include "guest-init/rootfs.h"

namespace kvmsandbox::guest_init {

namespace {

std::unexpected<std::string> bad(std::string m) {
    return std::unexpected(std::move(m));
}

std::optional<in_addr> parse_addr(std::string_view s) {
    std::string z(s);
    in_addr a{};
    if (s.empty() || ::inet_pton(AF_INET, z.c_str(), &a) != 1) return std::nullopt;
    return a;
}

sockaddr to_sockaddr(in_addr a) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr = a;
    sockaddr out{};
    std::memcpy(&out, &sin, sizeof sin);
    return out;
}

}  // namespace

std::expected<NetConfig, std::string> parse_net_record(std::string_view value) {
    std::vector<std::string_view> parts;
    for (size_t pos = 0;;) {
        size_t nl = value.find('\n', pos);
        parts.push_back(value.substr(pos, nl == std::string_view::npos ? nl : nl - pos));
        if (nl == std::string_view::npos || parts.size() > 3) break;
        pos = nl + 1;
    }
    if (parts.size() != 3) return bad("net record is not ADDR/PREFIX\\nGATEWAY\\nDNS");
    NetConfig c;
    size_t slash = parts[0].find('/');
    if (slash == std::string_view::npos) return bad("net address has no prefix length");
    auto addr = parse_addr(parts[0].substr(0, slash));
    std::string_view pfx = parts[0].substr(slash + 1);
    if (!addr || pfx.empty() || pfx.size() > 2 ||
        !std::all_of(pfx.begin(), pfx.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        return bad("bad net address: " + std::string(parts[0]));
    c.address = *addr;
    c.prefix = static_cast<unsigned>(std::stoul(std::string(pfx)));
    if (c.prefix < 1 || c.prefix > 32) return bad("bad net prefix: " + std::string(pfx));
    if (!parts[1].empty()) {
        c.gateway = parse_addr(parts[1]);
        if (!c.gateway) return bad("bad gateway: " + std::string(parts[1]));
    }
    if (!parts[2].empty()) {
        c.dns = parse_addr(parts[2]);
        if (!c.dns) return bad("bad dns: " + std::string(parts[2]));
    }
    return c;
}

in_addr prefix_netmask(unsigned prefix) {
    uint32_t m = prefix == 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
    in_addr a{};
    a.s_addr = htonl(m);
    return a;
}

std::expected<std::string, std::string> find_interface(const std::string& sys_class_net,
                                                       int timeout_ms) {
    for (int waited = 0;; waited += 10) {
        std::vector<std::string> names;
        if (DIR* d = ::opendir(sys_class_net.c_str())) {
            while (dirent* e = ::readdir(d)) {
                std::string n = e->d_name;
                if (n != "." && n != ".." && n != "lo") names.push_back(n);
            }
            ::closedir(d);
        }
        if (!names.empty()) return *std::min_element(names.begin(), names.end());
        if (waited >= timeout_ms) return bad("no network interface appeared (virtio_net)");
        timespec ts{0, 10 * 1000 * 1000};
        ::nanosleep(&ts, nullptr);
    }
}

std::expected<void, std::string> configure_interface(const std::string& ifname,
                                                     const NetConfig& cfg) {
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) return bad(errno_message("socket", errno));
    ifreq ifr{};
    if (ifname.size() >= IFNAMSIZ) return bad("interface name too long: " + ifname);
    std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
    ifr.ifr_addr = to_sockaddr(cfg.address);
    if (::ioctl(s.get(), SIOCSIFADDR, &ifr) != 0)
        return bad(errno_message("cannot set the address of " + ifname, errno));
    ifr.ifr_netmask = to_sockaddr(prefix_netmask(cfg.prefix));
    if (::ioctl(s.get(), SIOCSIFNETMASK, &ifr) != 0)
        return bad(errno_message("cannot set the netmask of " + ifname, errno));
    if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0)
        return bad(errno_message("cannot query " + ifname, errno));
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0)
        return bad(errno_message("cannot bring up " + ifname, errno));
    if (cfg.gateway) {
        rtentry rt{};
        rt.rt_dst = to_sockaddr(in_addr{});
        rt.rt_genmask = to_sockaddr(in_addr{});
        rt.rt_gateway = to_sockaddr(*cfg.gateway);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        std::string dev = ifname;
        rt.rt_dev = dev.data();
        if (::ioctl(s.get(), SIOCADDRT, &rt) != 0)
            return bad(errno_message("cannot add the default route via the gateway", errno));
    }
    return {};
}

std::string resolv_conf_text(in_addr dns) {
    char buf[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &dns, buf, sizeof buf);
    return std::string("# written by kvmsandbox's guest init\nnameserver ") + buf + "\n";
}

std::expected<void, std::string> install_resolv_conf(in_addr dns) {
    const std::string text = resolv_conf_text(dns);
    auto write_file = [&](const std::string& path) -> std::expected<void, std::string> {
        UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!fd || !write_all(fd.get(), text.data(), text.size()))
            return bad(errno_message("cannot write " + path, errno));
        return {};
    };
    struct stat st {};
    if (::stat("/etc/resolv.conf", &st) == 0) {
        if (auto r = mkdir_p("/run/kvmsandbox", 0755); !r) return r;
        if (auto r = write_file("/run/kvmsandbox/resolv.conf"); !r) return r;
        if (::mount("/run/kvmsandbox/resolv.conf", "/etc/resolv.conf", nullptr, MS_BIND, nullptr) !=
            0)
            return bad(errno_message("cannot bind-mount over /etc/resolv.conf", errno));
        return {};
    }
    // A dangling link: systemd-resolved's stub file lives under /run, which
    // is ours in the guest.
    char target[4096] = {};
    ssize_t n = ::readlink("/etc/resolv.conf", target, sizeof target - 1);
    if (n <= 0) return bad("the guest has no /etc/resolv.conf to point at the name server");
    std::string path(target, static_cast<size_t>(n));
    if (path[0] != '/') path = "/etc/" + path;
    if (auto slash = path.rfind('/'); slash > 0)
        if (auto r = mkdir_p(path.substr(0, slash), 0755); !r) return r;
    return write_file(path);
}

}  // namespace kvmsandbox::guest_init
