// The host side of a virtio-net device: where the guest's Ethernet frames go
// and where the frames for the guest come from (libslirp, a tap device).
//
// The interface is a pull API so that the device decides when it has room:
// a backend never calls into the device. Frames for the guest wait in the
// backend (bounded: slirp drops beyond its queue limits, a tap leaves them
// in the kernel's own bounded tap queue) until the device has receive
// buffers and calls recv().
//
// Threading: send(), recv() and set_offloads() are called by one thread at
// a time (the device serializes them with its own lock); rx_fd() and
// counters() may be used from any thread. A backend may run threads of its
// own (slirp does) and must join them in its destructor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "virtio/net/virtio_net_uapi.h"
#include "virtio/transport/virtio_device.h"

namespace kvmsandbox {

namespace net {
// struct virtio_net_hdr_v1 (VIRTIO_F_VERSION_1: num_buffers always present).
inline constexpr size_t kVnetHdrSize = sizeof(virtio_net_hdr_v1);
// The largest Ethernet frame either way (a 64 KiB GSO frame and its
// headers), not counting the virtio-net header.
inline constexpr size_t kMaxFrameSize = 65550;
// The smallest frame worth handing on: an Ethernet header.
inline constexpr size_t kEthHeaderSize = ETH_HLEN;

// Offloads the guest negotiated, as the backend needs to know them: what it
// may send towards the guest in a vnet header.
struct GuestOffloads {
    bool csum = false;  // partial checksums (VIRTIO_NET_F_GUEST_CSUM)
    bool tso4 = false;
    bool tso6 = false;
    bool ecn = false;
};
}  // namespace net

class NetBackend {
  public:
    virtual ~NetBackend() = default;

    // "slirp", "tap": for messages and `stat`.
    virtual std::string kind() const = 0;
    // Whether frames carry a 12-byte virtio_net_hdr_v1 in front, both in
    // send() and recv() (a tap with IFF_VNET_HDR). A backend without one
    // gets plain Ethernet frames with complete checksums, and produces
    // frames with correct checksums.
    virtual bool vnet_hdr() const = 0;
    // The MTU to announce to the guest (VIRTIO_NET_F_MTU), if any.
    virtual std::optional<uint16_t> mtu() const { return std::nullopt; }

    // Called when the driver activates the device. Only meaningful with
    // vnet_hdr(); an error makes activation fail.
    virtual Result<void> set_offloads(const net::GuestOffloads& offloads) = 0;

    // One frame from the guest (with the vnet header if vnet_hdr()); its
    // size is at most kVnetHdrSize + kMaxFrameSize. Returns false if the
    // frame was dropped. Must not block.
    virtual bool send(std::span<const uint8_t> frame) = 0;

    // Readable (level-triggered) while frames for the guest may be pending:
    // the device polls it for POLLIN. Valid for the backend's lifetime.
    virtual int rx_fd() const = 0;
    // Moves the next pending frame into `buf` (at least kVnetHdrSize +
    // kMaxFrameSize bytes) and returns its size, or 0 when none is pending.
    // A frame that cannot be used is dropped and counted by the backend.
    // Must not block.
    virtual size_t recv(std::span<uint8_t> buf) = 0;

    // Frames for the guest the backend dropped (its queue was full, or a
    // frame was unusable); the device adds them to its rx_dropped.
    virtual uint64_t rx_dropped() const { return 0; }
    // Further backend-specific counters for `stat`.
    virtual VirtioDevice::Counters counters() const { return {}; }
};

}  // namespace kvmsandbox
