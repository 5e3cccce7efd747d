// virtio-rng (virtio 1.x section 5.4): one queue of device-writable buffers
// that we fill from the host's getrandom(). Served on the notifying thread:
// each chain gets at most kMaxBytesPerRequest bytes, so even a queue full of
// huge buffers keeps that thread busy for a bounded time (getrandom only
// ever blocks before the host's pool is initialized, early at boot).
//
// A chain with device-readable buffers breaks the spec's "driver MUST NOT
// place driver-readable buffers" rule; like a chain that breaks the ring
// rules it stops the device until the driver resets it (set_needs_reset).
// Linux never does this, so a driver that does is confused and better told.
#pragma once

#include <linux/virtio_rng.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "virtio/transport/virtio_device.h"

namespace kvmsandbox {

class VirtioRng : public VirtioDevice {
  public:
    static constexpr uint16_t kQueueSize = 64;
    static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

    VirtioRng() = default;

    uint16_t device_type() const override { return VIRTIO_ID_RNG; }
    uint64_t device_features() const override { return 0; }
    uint16_t num_queues() const override { return 1; }
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    uint32_t config_size() const override { return 0; }
    void read_config(uint32_t, std::span<uint8_t> data) override;
    void write_config(uint32_t, std::span<const uint8_t>) override {}
    Result<void> activate(uint64_t features, std::span<SplitQueue* const> queues,
                          VirtioInterrupt& irq) override;
    void reset() override;
    void queue_notify(uint16_t q) override;

    std::string name() const override { return "rng"; }
    Counters counters() const override;

  private:
    void fail_locked();

    std::mutex mu_;
    SplitQueue* queue_ = nullptr;
    VirtioInterrupt* irq_ = nullptr;
    bool broken_ = false;
    std::atomic<uint64_t> requests_{0};
    std::atomic<uint64_t> bytes_{0};
    std::atomic<uint64_t> failures_{0};
};

}  // namespace kvmsandbox
