// virtio-net (virtio 1.x section 5.1): one receive and one transmit queue,
// frames exchanged with a NetBackend (libslirp or a tap device).
//
// Every frame carries a 12-byte virtio_net_hdr_v1. With a vnet-header
// backend (tap) the header is passed through and the checksum and TSO
// offloads the tap supports are offered; with a plain backend (slirp) the
// device strips it, completes partial checksums itself (VIRTIO_NET_F_CSUM)
// and marks received frames DATA_VALID (slirp computes correct checksums),
// so no TSO is offered.
//
// Everything the guest provides is untrusted: transmit chains are copied out
// of guest memory once and their header validated on the copy (a bad header
// drops that frame and counts it); a chain that breaks the ring rules or the
// virtio-net buffer rules (a transmit chain with a device-writable buffer or
// shorter than the header, a receive chain with a device-readable buffer or
// too small for the header) makes the device stop and ask for a reset.
//
// Threading: the device runs one thread of its own (the receive side): it
// polls the backend's rx_fd() while the driver has receive buffers posted,
// and fills them. queue_notify() may arrive on any thread (ioeventfd on the
// event loop, MMIO exit on a vCPU); transmit runs right there, receive
// buffers posted by the driver are filled right there too. Every entry point
// takes the device lock; the backend is only called with it held, and never
// calls back. Interrupts are raised with the lock held (the transport never
// calls back into a device from its interrupt path). reset() only takes the
// lock, so it cannot deadlock with the thread; once it returns, the queues
// and the interrupt are not touched again. The destructor stops and joins
// the thread, then destroys the backend.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "virtio/net/net_backend.h"
#include "virtio/transport/virtio_device.h"

namespace kvmsandbox {

class VirtioNet : public VirtioDevice {
  public:
    // Feature bits (VIRTIO_NET_F_*), header flags and GSO types
    // (VIRTIO_NET_HDR_*), status bits and layouts are <linux/virtio_net.h>'s.
    static constexpr uint16_t kRxQueue = 0, kTxQueue = 1;
    static constexpr uint16_t kQueueSize = 256;
    // struct virtio_net_config up to and including mtu.
    static constexpr uint32_t kConfigSize = offsetof(virtio_net_config, mtu) + sizeof(__virtio16);

    using Mac = std::array<uint8_t, 6>;

    // Takes ownership of `backend` and starts the device's receive thread.
    // `mac` is the guest's address (VIRTIO_NET_F_MAC): a locally
    // administered unicast address, e.g. 52:54:00:12:34:56. Fails only if
    // the thread or its wakeup eventfd cannot be created. The device does
    // not depend on anything else staying alive (guest memory comes with the
    // queues at activate()).
    static Result<std::unique_ptr<VirtioNet>> create(std::unique_ptr<NetBackend> backend,
                                                     const Mac& mac);
    ~VirtioNet() override;
    VirtioNet(const VirtioNet&) = delete;
    VirtioNet& operator=(const VirtioNet&) = delete;

    uint16_t device_type() const override { return VIRTIO_ID_NET; }
    uint64_t device_features() const override;
    uint16_t num_queues() const override { return 2; }
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    uint32_t pci_class() const override { return 0x020000; }  // Ethernet controller
    uint32_t config_size() const override { return kConfigSize; }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    // The MAC is read-only for a 1.x driver; nothing else is writable.
    void write_config(uint32_t, std::span<const uint8_t>) override {}
    Result<void> activate(uint64_t features, std::span<SplitQueue* const> queues,
                          VirtioInterrupt& irq) override;
    void reset() override;
    void queue_notify(uint16_t q) override;

    std::string name() const override { return "net"; }
    // rx_packets, rx_bytes, tx_packets, tx_bytes (frames without the vnet
    // header), rx_dropped (frames that could not be delivered: too big for
    // the guest's buffers, malformed, pending at a reset, plus the
    // backend's own queue drops), tx_dropped (frames not sent: bad header,
    // too big, backend refused), and the backend's counters.
    Counters counters() const override;

    const Mac& mac() const { return mac_; }
    NetBackend& backend() { return *backend_; }

  private:
    VirtioNet(std::unique_ptr<NetBackend> backend, const Mac& mac, UniqueFd wake);
    void run();
    void wake();
    SplitQueue* queue_locked(uint16_t q) const;
    void fail_locked();
    void process_tx_locked();
    // Sends one transmit chain; false if the chain broke the rules.
    bool transmit_locked(const VirtqChain& chain);
    void process_rx_locked();
    // Pops one receive chain into rx_chains_: 1 popped, 0 none, -1 broken.
    int pop_rx_chain_locked(SplitQueue& vq);
    // Takes the next usable frame from the backend into rx_buf_ (with the
    // header the guest gets); returns its size incl. header, 0 if none.
    size_t fetch_frame_locked();
    // Writes the pending frame into the first held chains; false on a ring error.
    bool deliver_locked(SplitQueue& vq, size_t nchains);

    const std::unique_ptr<NetBackend> backend_;
    const Mac mac_;
    const bool vnet_hdr_;
    UniqueFd wake_;

    mutable std::mutex mu_;
    SplitQueue* queues_[2] = {};
    VirtioInterrupt* irq_ = nullptr;
    uint64_t features_ = 0;
    bool active_ = false;
    bool broken_ = false;
    bool stop_ = false;
    // No receive buffers were left: the thread stops polling the backend
    // until the driver posts more (queue_notify(kRxQueue)).
    bool rx_stalled_ = false;
    // Receive chains popped but not filled yet (a frame waiting for enough
    // mergeable buffers), and the frame waiting for them.
    std::vector<VirtqChain> rx_chains_;
    std::vector<uint8_t> rx_buf_;
    size_t rx_len_ = 0;
    std::vector<uint8_t> tx_buf_;

    std::atomic<uint64_t> rx_packets_{0}, rx_bytes_{0}, rx_dropped_{0};
    std::atomic<uint64_t> tx_packets_{0}, tx_bytes_{0}, tx_dropped_{0};

    // Last member: started once everything above exists, joined first.
    std::thread thread_;
};

}  // namespace kvmsandbox
