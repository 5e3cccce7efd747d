// virtio-blk (virtio 1.x section 5.2) over a raw DiskImage.
//
// Requests are popped on the notifying thread and served on a worker pool,
// several at a time; data moves with preadv/pwritev straight between the
// image and the guest's buffers, never through a bounce buffer. Completions
// are pushed in whatever order the I/O finishes (virtio-blk has no ordering
// between requests in flight; FLUSH covers the writes completed before it).
//
// What the guest gets back:
//  - a request it may legitimately send but that fails (I/O error, sector
//    out of range, bad lengths, a write to a read-only disk, a malformed
//    header) completes with VIRTIO_BLK_S_IOERR;
//  - a type we do not implement, or DISCARD / WRITE_ZEROES not negotiated,
//    or a flag we do not know, completes with VIRTIO_BLK_S_UNSUPP;
//  - a chain with no device-writable byte (nowhere to put the status) or
//    one that breaks the ring rules stops the device until the driver resets
//    it (set_needs_reset): there is no way to answer it.
//
// The config space is read-only for the driver: CONFIG_WCE is not offered,
// the cache is always writeback and FLUSH is always honoured.
#pragma once

#include <linux/virtio_blk.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "base/worker_pool.h"
#include "virtio/block/disk_image.h"
#include "virtio/transport/virtio_device.h"

namespace kvmsandbox {

class VirtioBlock : public VirtioDevice {
  public:
    // Feature bits, request types and status values are <linux/virtio_blk.h>'s
    // (VIRTIO_BLK_F_*, VIRTIO_BLK_T_*, VIRTIO_BLK_S_*); so are the layouts.
    static constexpr uint32_t kHeaderSize = sizeof(virtio_blk_outhdr);
    static constexpr uint32_t kRangeSize = sizeof(virtio_blk_discard_write_zeroes);

    static constexpr uint16_t kQueueSize = 256;
    // Data buffers per request: the chain also holds the header and the
    // status byte, and a chain may not be longer than the queue.
    static constexpr uint32_t kSegMax = kQueueSize - 2;
    // One range of a DISCARD / WRITE_ZEROES is at most 1 GiB, so that the
    // pwrite fallback of WRITE_ZEROES keeps a worker for a bounded time.
    static constexpr uint32_t kMaxDiscardSectors = 1u << 21;
    static constexpr uint32_t kMaxDiscardSeg = 32;
    static constexpr uint32_t kMaxWriteZeroesSectors = 1u << 21;
    static constexpr uint32_t kMaxWriteZeroesSeg = 8;
    // A hint for the guest's discard granularity: 4 KiB, the block size of
    // the file systems images usually live on.
    static constexpr uint32_t kDiscardSectorAlignment = 8;
    // struct virtio_blk_config up to and including unused1[3] (secure erase
    // is not offered).
    static constexpr uint32_t kConfigSize = offsetof(virtio_blk_config, max_secure_erase_sectors);

    // `label` names the device in `stat` ("blk:" + label); `serial` is what
    // GET_ID returns (at most 20 bytes are used), the image's
    // default_serial() when empty. `pool` must outlive the device. The
    // device owns the image (its fd and lock) from now on.
    VirtioBlock(DiskImage image, std::string label, WorkerPool& pool, std::string serial = {});
    ~VirtioBlock() override;

    uint16_t device_type() const override { return VIRTIO_ID_BLOCK; }
    uint64_t device_features() const override;
    uint16_t num_queues() const override { return 1; }
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    uint32_t pci_class() const override { return 0x010000; }  // mass storage, SCSI (as QEMU)
    uint32_t config_size() const override { return kConfigSize; }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t, std::span<const uint8_t>) override {}
    Result<void> activate(uint64_t features, std::span<SplitQueue* const> queues,
                          VirtioInterrupt& irq) override;
    void reset() override;
    void queue_notify(uint16_t q) override;

    std::string name() const override { return "blk:" + label_; }
    Counters counters() const override;

    const DiskImage& image() const { return image_; }
    const std::string& serial() const { return serial_; }

  private:
    struct Outcome {
        uint8_t status = VIRTIO_BLK_S_IOERR;
        uint32_t written = 0;  // data bytes stored in the writable buffers
    };

    void serve(VirtqChain chain, uint64_t generation, uint64_t features);
    Outcome handle(const VirtqChain& chain, uint64_t features);
    Outcome do_read(const VirtqChain& chain, uint64_t sector);
    Outcome do_write(const VirtqChain& chain, uint64_t sector);
    Outcome do_flush(const VirtqChain& chain);
    Outcome do_get_id(const VirtqChain& chain);
    Outcome do_ranges(const VirtqChain& chain, bool discard);
    void wait_idle(std::unique_lock<std::mutex>& lock);
    Outcome ioerr();

    const DiskImage image_;
    const std::string label_;
    const std::string serial_;
    WorkerPool& pool_;

    std::mutex mu_;  // the queue, activation state, in-flight count
    std::condition_variable idle_cv_;
    SplitQueue* queue_ = nullptr;
    VirtioInterrupt* irq_ = nullptr;
    uint64_t features_ = 0;
    bool broken_ = false;      // a chain we could not answer: wait for reset
    uint64_t generation_ = 0;  // bumped by reset: stale completions are dropped
    size_t in_flight_ = 0;

    std::atomic<uint64_t> reads_{0}, writes_{0}, read_bytes_{0}, write_bytes_{0};
    std::atomic<uint64_t> flushes_{0}, discards_{0}, write_zeroes_{0};
    std::atomic<uint64_t> errors_{0}, unsupported_{0};
};

}  // namespace kvmsandbox
