// What a virtio device (console, 9p, net, ...) looks like to its transport.
// The transport (virtio_pci) owns the negotiation, the queue registers and
// the interrupts; a device only sees the outcome: acked features, ready
// queues and an interrupt sink. That keeps every device unit-testable with a
// fake guest memory and a scripted driver.
#pragma once

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "virtio/transport/virtqueue.h"

namespace kvmsandbox {

// Device types, feature bits and status bits are Linux's: VIRTIO_ID_*
// (<linux/virtio_ids.h>), VIRTIO_F_* / VIRTIO_CONFIG_S_* (<linux/virtio_config.h>),
// VIRTIO_RING_F_* (<linux/virtio_ring.h>, via virtqueue.h).
namespace virtio {
// The mask of feature bit `n`: the headers give bit numbers, the transport
// and the devices work on 64-bit feature masks.
inline constexpr uint64_t bit(unsigned n) {
    return uint64_t{1} << n;
}
}  // namespace virtio

// How a device raises interrupts; implemented by the transport. Thread-safe:
// devices call it from their worker / event-loop threads.
class VirtioInterrupt {
  public:
    virtual ~VirtioInterrupt() = default;
    // Used buffers were added to queue `q` (call after SplitQueue::needs_interrupt()).
    virtual void signal_queue(uint16_t q) = 0;
    // The device configuration space changed.
    virtual void signal_config() = 0;
    // The driver broke a rule (e.g. a bad chain): the device stops using its
    // queues; the transport sets DEVICE_NEEDS_RESET and tells the driver.
    virtual void set_needs_reset() = 0;
};

class VirtioDevice {
  public:
    virtual ~VirtioDevice() = default;

    virtual uint16_t device_type() const = 0;
    // Device-specific feature bits offered. The transport adds VERSION_1,
    // INDIRECT_DESC and EVENT_IDX (implemented by SplitQueue).
    virtual uint64_t device_features() const = 0;
    virtual uint16_t num_queues() const = 0;
    // Power of two, <= 32768.
    virtual uint16_t queue_max_size(uint16_t q) const = 0;
    // PCI class code (class << 16 | subclass << 8 | prog-if) for the PCI transport.
    virtual uint32_t pci_class() const { return 0xff0000; }

    // Device configuration space: config_size() bytes. The transport only
    // calls read/write_config with ranges inside [0, config_size()); the
    // contents written are guest-controlled and must be validated.
    virtual uint32_t config_size() const = 0;
    virtual void read_config(uint32_t offset, std::span<uint8_t> data) = 0;
    virtual void write_config(uint32_t offset, std::span<const uint8_t> data) = 0;

    // The driver set DRIVER_OK. `queues[i]` is queue i; queues the driver
    // did not enable are not ready(). The queues and `irq` stay valid until
    // reset() returns. An error leaves the device inactive (the transport
    // then sets DEVICE_NEEDS_RESET).
    virtual Result<void> activate(uint64_t features, std::span<SplitQueue* const> queues,
                                  VirtioInterrupt& irq) = 0;
    // The driver reset the device. When this returns the device no longer
    // touches the queues or the interrupt (it must not wait on a thread that
    // is blocked calling into VirtioInterrupt: the transport calls this
    // without holding its interrupt lock, so that is safe).
    virtual void reset() = 0;

    // Short name for `stat` ("console", "9p", ...) and the device's own
    // counters (name, value); thread-safe, values may be slightly stale.
    virtual std::string name() const = 0;
    using Counters = std::vector<std::pair<std::string, uint64_t>>;
    virtual Counters counters() const { return {}; }

    // The driver kicked queue `q` (from an ioeventfd or an MMIO notify write).
    // May arrive before activation or for a queue that is not ready: ignore
    // it then. `q` is < num_queues().
    virtual void queue_notify(uint16_t q) = 0;
};

}  // namespace kvmsandbox
