// The device side of a virtio 1.x split virtqueue. Everything in the rings is
// written by the guest and may change under our feet (another vCPU), so every
// field is read once into a local copy and validated before it is used; a
// chain that breaks a rule marks the queue broken instead of being half
// processed. Host memory is only ever reached through GuestMemory::span.
//
// Threading: one SplitQueue is driven by one consumer at a time (pop,
// push_used, needs_interrupt must be serialized by the device); the counters
// and broken() may be read from any thread.
#pragma once

// vring_init() in the legacy part is C, not C++; we use none of it.
#ifndef VIRTIO_RING_NO_LEGACY
#define VIRTIO_RING_NO_LEGACY
#endif
#include <linux/virtio_ring.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "base/result.h"

namespace kvmsandbox {

static_assert(std::endian::native == std::endian::little,
              "virtio 1.x rings are little-endian; this code reads them natively");

// The ring layouts and flags are Linux's (<linux/virtio_ring.h>: vring_desc,
// vring_avail, vring_used_elem, VRING_*); only sizes the header does not
// spell out are ours.
namespace virtq {
// The largest split queue (virtio 1.x 2.7: Queue Size <= 32768); the uapi
// header has no constant for it.
inline constexpr uint32_t kMaxQueueSize = 32768;
// Ring sizes in bytes for a queue of `size` entries (including the event
// fields: used_event after the avail ring, avail_event after the used ring).
inline constexpr uint64_t desc_table_bytes(uint32_t size) {
    return sizeof(vring_desc) * size;
}
inline constexpr uint64_t avail_ring_bytes(uint32_t size) {
    return sizeof(vring_avail) + sizeof(__virtio16) * (size + 1ull);
}
inline constexpr uint64_t used_ring_bytes(uint32_t size) {
    return sizeof(vring_used) + sizeof(vring_used_elem) * size + sizeof(__virtio16);
}
}  // namespace virtq

// The layouts this code (and every driver) relies on: the virtio 1.x split
// ring, little-endian, __virtioNN being plain integers in userspace.
static_assert(sizeof(vring_desc) == 16 && offsetof(vring_desc, addr) == 0 &&
              offsetof(vring_desc, len) == 8 && offsetof(vring_desc, flags) == 12 &&
              offsetof(vring_desc, next) == 14);
static_assert(sizeof(vring_avail) == 4 && offsetof(vring_avail, idx) == 2 &&
              offsetof(vring_avail, ring) == 4);
static_assert(sizeof(vring_used_elem) == 8 && offsetof(vring_used_elem, len) == 4);
static_assert(sizeof(vring_used) == 4 && offsetof(vring_used, ring) == 4);
static_assert(virtq::avail_ring_bytes(1) == 8 && virtq::used_ring_bytes(1) == 14);

// A popped descriptor chain: host views of the guest buffers, device-readable
// ones first. The spans stay valid as long as the GuestMemory does; their
// contents are still guest-writable, so a device copies out what it validates.
struct VirtqChain {
    uint16_t head = 0;
    std::vector<std::span<uint8_t>> readable;
    std::vector<std::span<uint8_t>> writable;
    uint32_t readable_len = 0;
    uint32_t writable_len = 0;
};

class SplitQueue {
  public:
    // `max_size`: the largest size the device accepts (a power of two <= 32768).
    SplitQueue(const GuestMemory& mem, uint16_t max_size);
    SplitQueue(const SplitQueue&) = delete;
    SplitQueue& operator=(const SplitQueue&) = delete;

    // Validates and adopts the driver's ring layout; resets indices and the
    // broken flag. On error the queue is left unconfigured (not ready).
    Result<void> configure(uint32_t size, uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa,
                           bool event_idx);
    // Back to the unconfigured state (device reset).
    void reset();

    bool ready() const { return size_ != 0; }
    uint16_t size() const { return size_; }
    uint16_t max_size() const { return max_size_; }
    bool event_idx() const { return event_idx_; }

    // Upper bound on readable_len + writable_len of a chain (default 2^32-1).
    void set_max_chain_bytes(uint32_t n) { max_chain_bytes_ = n; }

    // The next available chain, nullopt when the ring is empty, or an error
    // when the driver broke the ring (the queue is then broken for good,
    // until configure/reset): a device fails the request and should report
    // VirtioInterrupt::set_needs_reset().
    Result<std::optional<VirtqChain>> pop();

    // Returns a chain to the driver with `written` bytes stored in its
    // writable buffers. Fails (and breaks the queue) on a head that cannot
    // be in flight.
    Result<void> push_used(uint16_t head, uint32_t written);

    // Gives back the chain the last pop() returned, unused and not pushed:
    // the next pop() reads (and validates) it again. For a device that took
    // a buffer and then found it has nothing to put in it: completing it
    // empty would mean end-of-file to some drivers (virtio-console).
    void unpop();

    // Whether the driver wants an interrupt for the used entries pushed since
    // the last call (VIRTIO_F_EVENT_IDX's used_event, or the avail ring's
    // NO_INTERRUPT flag without it).
    bool needs_interrupt();

    // Without EVENT_IDX: sets/clears the used ring's NO_NOTIFY hint; with it,
    // disabling stops advancing avail_event. pop() re-enables nothing by
    // itself; a device that disables must re-enable and pop again to close
    // the race with the driver.
    void set_notifications(bool enabled);

    bool broken() const { return broken_.load(std::memory_order_relaxed); }
    uint64_t chains_popped() const { return popped_.load(std::memory_order_relaxed); }
    uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
    uint16_t next_avail() const { return last_avail_; }
    uint16_t next_used() const { return used_idx_; }

  private:
    std::unexpected<Error> mark_broken(std::string why);
    Result<VirtqChain> walk_chain(uint16_t head);
    // Appends one buffer descriptor to `chain`, enforcing the ordering and length rules.
    Result<void> add_buffer(VirtqChain& chain, const vring_desc& d, uint64_t& total);
    uint16_t read_avail_idx() const;
    void write_avail_event(uint16_t v);

    const GuestMemory& mem_;
    const uint16_t max_size_;
    uint16_t size_ = 0;
    bool event_idx_ = false;
    bool notifications_ = true;
    uint32_t max_chain_bytes_ = UINT32_MAX;
    // Host views of the rings, checked once by configure().
    std::span<uint8_t> desc_;
    std::span<uint8_t> avail_;
    std::span<uint8_t> used_;
    uint16_t last_avail_ = 0;      // next avail ring slot to consume (free-running)
    uint16_t used_idx_ = 0;        // next used ring slot to fill (free-running)
    uint16_t signalled_used_ = 0;  // used_idx_ at the last needs_interrupt()
    bool signalled_valid_ = false;
    uint32_t in_flight_ = 0;  // chains popped and not yet pushed back

    std::atomic<bool> broken_{false};
    std::atomic<uint64_t> popped_{0};
    std::atomic<uint64_t> errors_{0};
};

}  // namespace kvmsandbox
