// An existing tap device as the guest's network: frames go to and come from
// the host kernel's network stack through /dev/net/tun. The tap carries the
// virtio-net header (IFF_VNET_HDR, 12 bytes), so checksum and segmentation
// offloads pass between guest and host kernel without any work here.
//
// Creating the tap, bridging or routing it is the administrator's job
// (`ip tuntap add dev tap0 mode tap user $USER`): opening an existing one
// needs no privileges beyond being its owner, and the VMM never changes the
// host's network configuration.
//
// Frames for the guest wait in the kernel's tap queue (bounded by the tap's
// txqueuelen; the kernel drops and counts beyond it) until the device reads
// them.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/unique_fd.h"
#include "virtio/net/net_backend.h"

namespace kvmsandbox {

class TapBackend : public NetBackend {
  public:
    // Attaches to the existing tap device `ifname`. Errors are one line:
    // no such device, permission denied (CAP_NET_ADMIN or being the tap's
    // owner is needed), not a tap device, busy, name too long.
    static Result<std::unique_ptr<TapBackend>> open(const std::string& ifname);
    TapBackend(const TapBackend&) = delete;
    TapBackend& operator=(const TapBackend&) = delete;

    std::string kind() const override { return "tap"; }
    bool vnet_hdr() const override { return true; }
    // Tells the kernel which offloads it may use in frames for the guest
    // (TUNSETOFFLOAD).
    Result<void> set_offloads(const net::GuestOffloads& offloads) override;
    bool send(std::span<const uint8_t> frame) override;
    int rx_fd() const override { return fd_.get(); }
    size_t recv(std::span<uint8_t> buf) override;
    VirtioDevice::Counters counters() const override;

    const std::string& ifname() const { return ifname_; }

  private:
    TapBackend(std::string ifname, UniqueFd fd) : ifname_(std::move(ifname)), fd_(std::move(fd)) {}

    const std::string ifname_;
    UniqueFd fd_;
    std::atomic<uint64_t> tx_errors_{0};
    std::atomic<uint64_t> rx_errors_{0};
};

}  // namespace kvmsandbox
