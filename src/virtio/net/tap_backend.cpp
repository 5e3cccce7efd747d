#include "virtio/net/tap_backend.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvmsandbox {

Result<std::unique_ptr<TapBackend>> TapBackend::open(const std::string& ifname) {
    if (ifname.empty()) return fail("tap device name is empty");
    if (ifname.size() >= IFNAMSIZ)
        return failf("tap device name '{}' is too long (at most {} characters)", ifname,
                     IFNAMSIZ - 1);
    // TUNSETIFF would create a missing device (given CAP_NET_ADMIN): we only
    // attach to one the administrator set up.
    if (::if_nametoindex(ifname.c_str()) == 0)
        return failf(
            "no such network device '{}' (create it with: ip tuntap add dev {} mode tap "
            "user $USER)",
            ifname, ifname);

    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        const int e = errno;
        if (e == ENOENT || e == ENODEV || e == ENXIO)
            return fail("cannot open /dev/net/tun: no such device (is the tun module loaded?)");
        if (e == EACCES || e == EPERM) return fail("cannot open /dev/net/tun: permission denied");
        return failf("cannot open /dev/net/tun: {}", std::strerror(e));
    }

    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
        const int e = errno;
        switch (e) {
            case EPERM:
            case EACCES:
                return failf(
                    "cannot attach to tap device '{}': permission denied (needs "
                    "CAP_NET_ADMIN, or to run as the tap's owner or group)",
                    ifname);
            case EINVAL:
                return failf("'{}' is not a tap device (or a multi-queue one, not supported)",
                             ifname);
            case EBUSY:
                return failf("tap device '{}' is busy (another process has it open)", ifname);
            default:
                return failf("cannot attach to tap device '{}': {}", ifname, std::strerror(e));
        }
    }
    // The kernel silently ignores flags it does not know; without the vnet
    // header every frame would be misparsed.
    ifreq got{};
    if (::ioctl(fd.get(), TUNGETIFF, &got) < 0)
        return fail_errno(fmt::format("tap device '{}': TUNGETIFF", ifname));
    if (!(got.ifr_flags & IFF_TAP) || !(got.ifr_flags & IFF_VNET_HDR))
        return failf("tap device '{}' does not support the virtio-net header", ifname);
    int hdr = static_cast<int>(net::kVnetHdrSize);
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) < 0)
        return fail_errno(fmt::format("tap device '{}': TUNSETVNETHDRSZ", ifname));
    // No offloads until a driver negotiates them.
    if (::ioctl(fd.get(), TUNSETOFFLOAD, 0u) < 0)
        return fail_errno(fmt::format("tap device '{}': TUNSETOFFLOAD", ifname));
    return std::unique_ptr<TapBackend>(new TapBackend(ifname, std::move(fd)));
}

Result<void> TapBackend::set_offloads(const net::GuestOffloads& o) {
    unsigned flags = 0;
    if (o.csum) flags |= TUN_F_CSUM;
    if (o.csum && o.tso4) flags |= TUN_F_TSO4;
    if (o.csum && o.tso6) flags |= TUN_F_TSO6;
    if ((flags & (TUN_F_TSO4 | TUN_F_TSO6)) && o.ecn) flags |= TUN_F_TSO_ECN;
    if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) < 0)
        return fail_errno(fmt::format("tap device '{}': TUNSETOFFLOAD {:#x}", ifname_, flags));
    return {};
}

bool TapBackend::send(std::span<const uint8_t> frame) {
    const ssize_t n = ::write(fd_.get(), frame.data(), frame.size());
    if (n == static_cast<ssize_t>(frame.size())) return true;
    // EAGAIN included: a full tap is the network dropping a frame.
    tx_errors_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

size_t TapBackend::recv(std::span<uint8_t> buf) {
    for (;;) {
        const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
        if (n > 0) return static_cast<size_t>(n);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) rx_errors_.fetch_add(1, std::memory_order_relaxed);
        return 0;
    }
}

VirtioDevice::Counters TapBackend::counters() const {
    return {{"tap_tx_errors", tx_errors_.load(std::memory_order_relaxed)},
            {"tap_rx_errors", rx_errors_.load(std::memory_order_relaxed)}};
}

}  // namespace kvmsandbox
