// virtio-balloon (virtio 1.x section 5.5): the host asks the guest to give
// back memory by setting a target balloon size in the config space; the
// guest's driver allocates that many pages, lists their frame numbers on the
// inflate queue and we release the host memory behind them. Deflating hands
// pages back to the guest, which simply touches them again (the anonymous
// mapping refaults zero-filled pages), so the host side only counts.
//
// The stats queue carries guest memory statistics: the driver posts one
// buffer and the device holds it; request_stats() returns it, the driver
// refills it with fresh values and posts it again.
//
// Everything in the queues is guest-controlled: PFNs are checked against
// guest RAM one by one, invalid ones are counted and skipped; a chain that
// breaks the ring rules stops the device until the driver resets it.
//
// Threading: every entry point takes the device lock. Interrupts are raised
// with it held (the transport's interrupt path never calls back into a
// device), and the page release function runs with it held too.
#pragma once

#include <linux/virtio_balloon.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>

#include "base/guest_memory.h"
#include "virtio/transport/virtio_device.h"

namespace kvmsandbox {

// The guest's memory statistics (virtio_balloon_stat tags VIRTIO_BALLOON_S_*
// 0..9), as last posted on the stats queue. A tag the driver did not send is
// nullopt.
struct BalloonStats {
    // The tags we know (and name); not VIRTIO_BALLOON_S_NR, which grows with
    // newer headers while tag_name() and `stat` cover these ten.
    static constexpr uint16_t kNumTags = VIRTIO_BALLOON_S_HTLB_PGFAIL + 1;

    std::array<std::optional<uint64_t>, kNumTags> values;
    uint64_t updates = 0;  // stats buffers parsed since the device was created

    std::optional<uint64_t> get(uint16_t tag) const {
        return tag < kNumTags ? values[tag] : std::nullopt;
    }
    // A short name for `tag` ("swap_in", "free_memory", ...), "" if unknown.
    static std::string_view tag_name(uint16_t tag);
};

struct BalloonCounters {
    uint64_t pages_inflated = 0;    // valid PFNs received on the inflate queue
    uint64_t pages_deflated = 0;    // valid PFNs received on the deflate queue
    uint64_t invalid_pfns = 0;      // PFNs outside guest RAM (skipped)
    uint64_t release_failures = 0;  // ranges the release function could not free
    uint64_t requests = 0;          // chains taken from any queue
    uint64_t bad_requests = 0;      // chains with invalid PFNs, stray bytes or too much data
};

class VirtioBalloon : public VirtioDevice {
  public:
    // Feature bits (VIRTIO_BALLOON_F_*; MUST_TELL_HOST is not offered), stats
    // tags and layouts are <linux/virtio_balloon.h>'s.
    static constexpr uint16_t kInflateQueue = 0, kDeflateQueue = 1, kStatsQueue = 2;
    static constexpr uint16_t kQueueSize = 128;
    // Balloon pages are always 4 KiB, whatever the guest's page size.
    static constexpr uint32_t kPageShift = VIRTIO_BALLOON_PFN_SHIFT;
    static constexpr uint64_t kPageSize = 1ull << kPageShift;
    // PFNs looked at per inflate/deflate chain; Linux sends at most 256. The
    // rest of a longer chain is ignored (and the request counted as bad).
    static constexpr uint32_t kMaxPfnsPerRequest = 4096;
    // Stats bytes parsed per buffer (64 entries; Linux sends 10 to 16).
    static constexpr uint32_t kMaxStatsBytes = 640;

    // Gives the host memory behind guest pages back to the host: `host` is
    // the host view of `host.size() / kPageSize` whole guest pages starting
    // at guest address `gpa`. Returns false if it could not. Called with
    // runs of contiguous pages, with the device lock held.
    using ReleaseFn = std::function<bool(uint64_t gpa, std::span<uint8_t> host)>;
    // The default: madvise(MADV_DONTNEED) on the whole host pages inside
    // `host`. Right for guest RAM mapped private and anonymous (what Machine
    // maps): the pages are freed and refault zero-filled, and KVM's MMU
    // notifier drops the guest mappings. Host pages only partly inside the
    // range are kept, so a host with pages larger than 4 KiB never throws
    // away guest data the guest did not give up.
    static bool madvise_release(uint64_t gpa, std::span<uint8_t> host);

    // `mem` is guest RAM (must outlive the device); `ram_bytes` caps the
    // target. `release` defaults to madvise_release; unit tests over
    // heap-backed fake memory pass a recorder instead.
    VirtioBalloon(const GuestMemory& mem, uint64_t ram_bytes, ReleaseFn release = {});

    uint16_t device_type() const override { return VIRTIO_ID_BALLOON; }
    // DEFLATE_ON_OOM is not offered (QEMU's default too): with it the guest
    // keeps its MemTotal and may take pages back at will, so the host could
    // neither see nor rely on what `balloon inflate` achieved.
    uint64_t device_features() const override { return virtio::bit(VIRTIO_BALLOON_F_STATS_VQ); }
    uint16_t num_queues() const override { return 3; }
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    // struct virtio_balloon_config up to and including actual (no free page
    // hinting, no page poisoning).
    uint32_t config_size() const override {
        return offsetof(virtio_balloon_config, actual) + sizeof(__le32);
    }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t offset, std::span<const uint8_t> data) override;
    Result<void> activate(uint64_t features, std::span<SplitQueue* const> queues,
                          VirtioInterrupt& irq) override;
    void reset() override;
    void queue_notify(uint16_t q) override;

    // Sets the balloon size the guest should reach: rounded up to whole
    // 4 KiB pages, capped at guest RAM. Tells an active driver through a
    // config-change interrupt (an inactive one reads it when it starts).
    // Returns the target actually set, in bytes.
    uint64_t set_target_bytes(uint64_t bytes);
    uint64_t target_bytes();
    // What the driver says the balloon holds (its `actual` field), capped at
    // guest RAM; 0 after a reset.
    uint64_t actual_bytes();

    // Returns the held stats buffer to the driver so that it posts fresh
    // values. False if there is none (stats not negotiated, not active, or
    // the driver has not posted the buffer back yet); stats().updates
    // increases when the fresh values arrive.
    bool request_stats();
    BalloonStats stats();
    BalloonCounters balloon_counters();
    std::string name() const override { return "balloon"; }
    Counters counters() const override;

  private:
    SplitQueue* queue_locked(uint16_t q) const;
    void fail_locked();
    template <typename Serve>
    void serve_queue_locked(uint16_t q, Serve&& serve);
    void handle_pfn_queue_locked(uint16_t q);
    // Walks the PFNs of one inflate/deflate chain; returns false if the
    // chain was malformed in any way.
    bool handle_pfns_locked(const VirtqChain& chain, bool inflate);
    void handle_stats_queue_locked();
    bool parse_stats_locked(const VirtqChain& chain);

    const GuestMemory& mem_;
    const uint64_t ram_pages_;
    const ReleaseFn release_;

    mutable std::mutex mu_;
    SplitQueue* queues_[3] = {};
    VirtioInterrupt* irq_ = nullptr;
    bool active_ = false;
    bool broken_ = false;
    bool stats_vq_ = false;
    std::optional<uint16_t> stats_head_;  // the stats buffer we hold
    uint32_t num_pages_ = 0;              // the target, in pages
    uint32_t actual_ = 0;                 // the driver's `actual`
    BalloonStats stats_;
    BalloonCounters counters_;
};

}  // namespace kvmsandbox
