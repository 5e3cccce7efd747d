// virtio-9p: one request queue carrying 9P2000.L messages to a P9Server.
// Requests are popped on the notifying thread and served on a worker pool, so
// a slow file operation never stalls the event loop or a vCPU; replies go
// straight from the host file into the guest's buffers (P9Server's
// scatter/gather form).
#pragma once

#include <linux/virtio_9p.h>
#include <linux/virtio_ids.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "base/worker_pool.h"
#include "virtio/9p/server.h"
#include "virtio/transport/virtio_device.h"

namespace kvmsandbox {

// The device config is struct virtio_9p_config: le16 tag_len, then the tag
// bytes (no NUL). read_config relies on exactly this layout.
static_assert(offsetof(virtio_9p_config, tag_len) == 0);
static_assert(offsetof(virtio_9p_config, tag) == 2);
static_assert(sizeof(virtio_9p_config) == 2);
static_assert(sizeof(virtio_9p_config::tag_len) == 2);

class VirtioP9 : public VirtioDevice {
  public:
    static constexpr uint64_t kFMountTag = 1ull << VIRTIO_9P_MOUNT_TAG;
    static constexpr uint16_t kQueueSize = 128;
    static constexpr size_t kMaxTagLen = 64;

    // `pool` must outlive the device.
    VirtioP9(std::string tag, std::unique_ptr<p9::P9Server> server, WorkerPool& pool);
    ~VirtioP9() override;

    uint16_t device_type() const override { return VIRTIO_ID_9P; }
    uint64_t device_features() const override { return kFMountTag; }
    uint16_t num_queues() const override { return 1; }
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    uint32_t pci_class() const override { return 0x018000; }  // mass storage, other
    uint32_t config_size() const override {
        return static_cast<uint32_t>(sizeof(virtio_9p_config) + tag_.size());
    }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t, std::span<const uint8_t>) override {}
    Result<void> activate(uint64_t features, std::span<SplitQueue* const> queues,
                          VirtioInterrupt& irq) override;
    void reset() override;
    void queue_notify(uint16_t q) override;

    uint64_t requests() const { return requests_.load(); }
    std::string name() const override { return "9p:" + tag_; }
    Counters counters() const override { return {{"requests", requests()}}; }

  private:
    void serve(VirtqChain chain, uint64_t generation);
    void wait_idle(std::unique_lock<std::mutex>& lock);

    const std::string tag_;
    std::unique_ptr<p9::P9Server> server_;
    WorkerPool& pool_;

    std::mutex mu_;  // the queue, activation state, in-flight count
    std::condition_variable idle_cv_;
    SplitQueue* queue_ = nullptr;
    VirtioInterrupt* irq_ = nullptr;
    uint64_t generation_ = 0;  // bumped by reset: stale replies are dropped
    size_t in_flight_ = 0;
    std::atomic<uint64_t> requests_{0};
};

}  // namespace kvmsandbox
