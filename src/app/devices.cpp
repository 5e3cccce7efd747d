#include "app/devices.h"

#include <net/if.h>

#include <filesystem>

#include "virtio/block/block.h"
#include "virtio/block/disk_image.h"
#include "virtio/net/net.h"
#include "virtio/net/slirp_backend.h"
#include "virtio/net/tap_backend.h"
#include "virtio/rng/rng.h"

namespace kvmsandbox::app {

std::string format_ipv4(const std::array<uint8_t, 4>& a) {
    return fmt::format("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
}

std::vector<std::string> device_modules(const DevicePlan& plan) {
    std::vector<std::string> mods;
    if (plan.rng) mods.push_back("virtio_rng");
    if (!plan.disks.empty()) {
        mods.push_back("virtio_blk");
        // What a disk made on the host most likely holds, and what run
        // --disk boots.
        mods.push_back("ext4");
        // ext4's checksums ask the crypto API for crc32c at mount time, which
        // would need modprobe; before the root is mounted there is none.
        mods.push_back("crc32c_generic");
    }
    if (plan.net != NetMode::None) mods.push_back("virtio_net");
    return mods;
}

std::optional<GuestRunSpec::Net> guest_net_spec(const DevicePlan& plan) {
    if (!plan.guest_net) return std::nullopt;
    const GuestNet& g = *plan.guest_net;
    GuestRunSpec::Net n;
    n.address_cidr = fmt::format("{}/{}", format_ipv4(g.address.addr), g.address.prefix);
    if (g.gateway) n.gateway = format_ipv4(*g.gateway);
    if (g.dns) n.dns = format_ipv4(*g.dns);
    return n;
}

namespace {

Result<std::unique_ptr<NetBackend>> make_backend(const DevicePlan& plan) {
    if (plan.net == NetMode::Tap) {
        // TUNSETIFF would create a missing tap for a privileged caller; the
        // user asked for an existing one.
        if (::if_nametoindex(plan.tap_name.c_str()) == 0)
            return failf(
                "--net tap:{}: no such network interface; create it first, e.g. 'ip tuntap add "
                "dev {} mode tap user $USER'",
                plan.tap_name, plan.tap_name);
        auto tap = TapBackend::open(plan.tap_name);
        if (!tap) return failf("--net tap:{}: {}", plan.tap_name, tap.error().message);
        return std::unique_ptr<NetBackend>(std::move(*tap));
    }
    SlirpConfig cfg;
    cfg.network = "10.0.2.0";
    cfg.prefix_len = 24;
    // slirp cannot take TSO frames, so large frames are how the guest sends
    // few big TCP segments instead of one exit per 1500 bytes; the guest's
    // interface takes this MTU from the device (VIRTIO_NET_F_MTU).
    cfg.mtu = 65520;
    cfg.host = format_ipv4(kUserNetGateway);
    cfg.dns = format_ipv4(kUserNetDns);
    cfg.guest = format_ipv4(kUserNetGuest);
    for (const auto& f : plan.forwards)
        cfg.forwards.push_back(SlirpPortForward{f.udp, f.host_addr, f.host_port, f.guest_port});
    auto slirp = SlirpBackend::create(cfg);
    if (!slirp) return failf("--net user: {}", slirp.error().message);
    return std::unique_ptr<NetBackend>(std::move(*slirp));
}

}  // namespace

Result<void> attach_devices(Machine& m, const DevicePlan& plan, WorkerPool& pool) {
    if (plan.rng) KS_TRY(m.add_virtio_device(std::make_unique<VirtioRng>()));
    for (const auto& d : plan.disks) {
        KS_TRY_ASSIGN(auto image, DiskImage::open(d.path, d.read_only));
        std::string label = std::filesystem::path(d.path).filename().string();
        auto dev = std::make_unique<VirtioBlock>(std::move(image), label, pool);
        KS_TRY(m.add_virtio_device(std::move(dev)));
    }
    if (plan.net != NetMode::None) {
        KS_TRY_ASSIGN(auto backend, make_backend(plan));
        // QEMU's locally administered prefix; one guest per VM, so one address.
        auto dev = VirtioNet::create(std::move(backend), {0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
        if (!dev) return std::unexpected(dev.error());
        KS_TRY(m.add_virtio_device(std::move(*dev)));
    }
    return {};
}

}  // namespace kvmsandbox::app
