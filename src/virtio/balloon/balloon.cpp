#include "virtio/balloon/balloon.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <fmt/core.h>

namespace kvmsandbox {

namespace {

constexpr uint32_t kNumPagesOffset = offsetof(virtio_balloon_config, num_pages);
constexpr uint32_t kActualOffset = offsetof(virtio_balloon_config, actual);
// struct virtio_balloon_stat { le16 tag; le64 val; } __attribute__((packed))
constexpr size_t kStatEntrySize = sizeof(virtio_balloon_stat);
static_assert(kStatEntrySize == 10 && offsetof(virtio_balloon_stat, val) == 2);
static_assert(BalloonStats::kNumTags <= VIRTIO_BALLOON_S_NR);

void put_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t host_page_size() {
    static const uint64_t size = [] {
        const long s = ::sysconf(_SC_PAGESIZE);
        return s > 0 ? static_cast<uint64_t>(s) : uint64_t{4096};
    }();
    return size;
}

}  // namespace

std::string_view BalloonStats::tag_name(uint16_t tag) {
    static constexpr std::string_view kNames[kNumTags] = {
        "swap_in",          "swap_out",    "major_faults",
        "minor_faults",     "free_memory", "total_memory",
        "available_memory", "caches",      "hugetlb_allocations",
        "hugetlb_failures"};
    return tag < kNumTags ? kNames[tag] : std::string_view{};
}

bool VirtioBalloon::madvise_release(uint64_t /*gpa*/, std::span<uint8_t> host) {
    const uint64_t page = host_page_size();
    const auto start = reinterpret_cast<uintptr_t>(host.data());
    const uintptr_t first = (start + page - 1) / page * page;
    const uintptr_t last = (start + host.size()) / page * page;
    // Nothing whole to free (a host page larger than the run): the memory
    // simply stays; that is not an error.
    if (last <= first) return true;
    return ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) == 0;
}

VirtioBalloon::VirtioBalloon(const GuestMemory& mem, uint64_t ram_bytes, ReleaseFn release)
    : mem_(mem),
      // num_pages is a le32: 16 TiB of balloon at most.
      ram_pages_(std::min<uint64_t>(ram_bytes >> kPageShift, UINT32_MAX)),
      release_(release ? std::move(release) : ReleaseFn(&VirtioBalloon::madvise_release)) {}

void VirtioBalloon::read_config(uint32_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mu_);
    uint8_t cfg[kActualOffset + sizeof(uint32_t)];
    put_le32(cfg + kNumPagesOffset, num_pages_);
    put_le32(cfg + kActualOffset, actual_);
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i < sizeof(cfg) ? cfg[offset + i] : 0;
}

void VirtioBalloon::write_config(uint32_t offset, std::span<const uint8_t> data) {
    // The driver may only write `actual`, and drivers do so with one aligned
    // 32-bit access; anything else (num_pages is ours, partial writes) is
    // ignored rather than half applied.
    if (offset != kActualOffset || data.size() != 4) return;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(data[i]) << (8 * i);
    std::lock_guard lock(mu_);
    actual_ = v;
}

Result<void> VirtioBalloon::activate(uint64_t features, std::span<SplitQueue* const> queues,
                                     VirtioInterrupt& irq) {
    std::lock_guard lock(mu_);
    const bool stats = (features & virtio::bit(VIRTIO_BALLOON_F_STATS_VQ)) != 0;
    if (queues.size() != num_queues()) return fail("virtio-balloon: wrong number of queues");
    if (!queues[kInflateQueue] || !queues[kDeflateQueue])
        return fail("virtio-balloon: needs its inflate and deflate queues");
    if (stats && !queues[kStatsQueue]) return fail("virtio-balloon: needs its stats queue");
    for (size_t i = 0; i < 3; ++i) queues_[i] = queues[i];
    irq_ = &irq;
    stats_vq_ = stats;
    stats_head_.reset();
    active_ = true;
    broken_ = false;
    return {};
}

void VirtioBalloon::reset() {
    std::lock_guard lock(mu_);
    // The held stats buffer belongs to the old rings: forget it, never push
    // it. The driver's balloon is gone with the reset, so is its `actual`;
    // the target is the host's wish and stays.
    for (auto& q : queues_) q = nullptr;
    irq_ = nullptr;
    active_ = false;
    broken_ = false;
    stats_vq_ = false;
    stats_head_.reset();
    actual_ = 0;
}

SplitQueue* VirtioBalloon::queue_locked(uint16_t q) const {
    if (!active_ || broken_ || q >= 3 || !queues_[q] || !queues_[q]->ready()) return nullptr;
    if (q == kStatsQueue && !stats_vq_) return nullptr;
    return queues_[q];
}

void VirtioBalloon::fail_locked() {
    // A driver that breaks the ring rules gets no further service until it
    // resets the device.
    broken_ = true;
    stats_head_.reset();
    if (irq_) irq_->set_needs_reset();
}

void VirtioBalloon::queue_notify(uint16_t q) {
    std::lock_guard lock(mu_);
    if (!active_ || broken_) return;
    if (q == kInflateQueue || q == kDeflateQueue)
        handle_pfn_queue_locked(q);
    else if (q == kStatsQueue)
        handle_stats_queue_locked();
}

// Pops every chain of queue q and hands it to serve(chain, vq), which
// returns false when the ring broke (the device is then failed) and sets
// `pushed` when it returned a buffer; one interrupt covers them all.
template <typename Serve>
void VirtioBalloon::serve_queue_locked(uint16_t q, Serve&& serve) {
    SplitQueue* vq = queue_locked(q);
    if (!vq) return;
    bool pushed = false;
    for (;;) {
        auto chain = vq->pop();
        if (!chain) {
            fail_locked();
            return;
        }
        if (!*chain) break;
        ++counters_.requests;
        if (!serve(**chain, *vq, pushed)) {
            fail_locked();
            return;
        }
    }
    if (pushed && irq_ && vq->needs_interrupt()) irq_->signal_queue(q);
}

void VirtioBalloon::handle_pfn_queue_locked(uint16_t q) {
    serve_queue_locked(q, [&](const VirtqChain& chain, SplitQueue& vq, bool& pushed) {
        if (!handle_pfns_locked(chain, q == kInflateQueue)) ++counters_.bad_requests;
        if (!vq.push_used(chain.head, 0)) return false;
        pushed = true;
        return true;
    });
}

bool VirtioBalloon::handle_pfns_locked(const VirtqChain& chain, bool inflate) {
    // PFN arrays come in device-readable buffers only.
    bool ok = chain.writable_len == 0;

    // Contiguous pages are released with one call: Linux hands over runs of
    // neighbouring pages often enough, and each madvise is a system call.
    uint64_t run_gpa = 0;
    uint8_t* run_host = nullptr;
    uint64_t run_len = 0;
    auto flush = [&] {
        if (run_len == 0) return;
        if (!release_(run_gpa, std::span<uint8_t>(run_host, run_len))) ++counters_.release_failures;
        run_len = 0;
    };
    auto page = [&](uint32_t pfn) {
        // pfn < 2^32, so the address (< 2^44) cannot overflow.
        const uint64_t gpa = uint64_t{pfn} << kPageShift;
        const auto host = mem_.span(gpa, kPageSize);
        if (!host) {
            ++counters_.invalid_pfns;
            ok = false;
            return;
        }
        if (!inflate) {
            ++counters_.pages_deflated;
            return;
        }
        ++counters_.pages_inflated;
        if (run_len && run_gpa + run_len == gpa && run_host + run_len == host->data()) {
            run_len += kPageSize;
            return;
        }
        flush();
        run_gpa = gpa;
        run_host = host->data();
        run_len = kPageSize;
    };

    // le32 PFNs, which may straddle buffer boundaries: each byte of guest
    // memory is read once, through a small carry.
    uint8_t carry[4];
    size_t have = 0;
    uint32_t seen = 0;
    bool over = false;
    for (const auto& buf : chain.readable) {
        for (size_t i = 0; i < buf.size();) {
            if (seen == kMaxPfnsPerRequest) {
                over = true;  // the rest of the chain is ignored
                break;
            }
            const size_t k = std::min(sizeof(carry) - have, buf.size() - i);
            std::memcpy(carry + have, buf.data() + i, k);
            have += k;
            i += k;
            if (have == sizeof(carry)) {
                uint32_t pfn;
                std::memcpy(&pfn, carry, sizeof(pfn));
                have = 0;
                ++seen;
                page(pfn);
            }
        }
        if (over) break;
    }
    // Too many PFNs, or a trailing partial one (ignored).
    if (over || have != 0) ok = false;
    flush();
    return ok;
}

void VirtioBalloon::handle_stats_queue_locked() {
    serve_queue_locked(kStatsQueue, [&](const VirtqChain& chain, SplitQueue& vq, bool& pushed) {
        // The driver keeps a single buffer in flight. One that posts another
        // while we hold one gets the older one back (as QEMU does), so no
        // buffer is leaked in the ring.
        if (stats_head_) {
            if (!vq.push_used(*stats_head_, 0)) return false;
            pushed = true;
            ++counters_.bad_requests;
        }
        stats_head_ = chain.head;
        if (!parse_stats_locked(chain)) ++counters_.bad_requests;
        return true;
    });
}

bool VirtioBalloon::parse_stats_locked(const VirtqChain& chain) {
    bool ok = chain.writable_len == 0;
    // Copied out first: the guest can rewrite the buffer while we parse.
    uint8_t bytes[kMaxStatsBytes];
    size_t n = 0;
    for (const auto& buf : chain.readable) {
        const size_t k = std::min(buf.size(), sizeof(bytes) - n);
        std::memcpy(bytes + n, buf.data(), k);
        n += k;
    }
    if (chain.readable_len > sizeof(bytes)) ok = false;
    if (n % kStatEntrySize != 0) ok = false;  // a truncated last entry is ignored

    BalloonStats fresh;
    fresh.updates = stats_.updates + 1;
    for (size_t at = 0; at + kStatEntrySize <= n; at += kStatEntrySize) {
        virtio_balloon_stat st;
        std::memcpy(&st, bytes + at, sizeof(st));
        const uint16_t tag = st.tag;
        const uint64_t val = st.val;
        // Tags we do not know (newer drivers send more) are skipped.
        if (tag < BalloonStats::kNumTags) fresh.values[tag] = val;
    }
    stats_ = fresh;
    return ok;
}

uint64_t VirtioBalloon::set_target_bytes(uint64_t bytes) {
    std::lock_guard lock(mu_);
    const uint64_t pages = bytes / kPageSize + (bytes % kPageSize != 0);
    num_pages_ = static_cast<uint32_t>(std::min(pages, ram_pages_));
    if (active_ && irq_) irq_->signal_config();
    return uint64_t{num_pages_} << kPageShift;
}

uint64_t VirtioBalloon::target_bytes() {
    std::lock_guard lock(mu_);
    return uint64_t{num_pages_} << kPageShift;
}

uint64_t VirtioBalloon::actual_bytes() {
    std::lock_guard lock(mu_);
    // The driver may claim anything; never report more than guest RAM.
    return std::min<uint64_t>(actual_, ram_pages_) << kPageShift;
}

bool VirtioBalloon::request_stats() {
    std::lock_guard lock(mu_);
    SplitQueue* vq = queue_locked(kStatsQueue);
    if (!vq || !stats_head_) return false;
    const uint16_t head = *stats_head_;
    stats_head_.reset();
    if (!vq->push_used(head, 0)) {
        fail_locked();
        return false;
    }
    if (irq_ && vq->needs_interrupt()) irq_->signal_queue(kStatsQueue);
    return true;
}

BalloonStats VirtioBalloon::stats() {
    std::lock_guard lock(mu_);
    return stats_;
}

BalloonCounters VirtioBalloon::balloon_counters() {
    std::lock_guard lock(mu_);
    return counters_;
}

VirtioDevice::Counters VirtioBalloon::counters() const {
    std::lock_guard lock(mu_);
    Counters c = {{"target_bytes", uint64_t{num_pages_} << kPageShift},
                  {"actual_bytes", std::min<uint64_t>(actual_, ram_pages_) << kPageShift},
                  {"pages_inflated", counters_.pages_inflated},
                  {"pages_deflated", counters_.pages_deflated},
                  {"invalid_pfns", counters_.invalid_pfns},
                  {"bad_requests", counters_.bad_requests}};
    for (uint16_t t = 0; t < BalloonStats::kNumTags; ++t)
        if (auto v = stats_.get(t))
            c.emplace_back(fmt::format("guest_{}", BalloonStats::tag_name(t)), *v);
    return c;
}

}  // namespace kvmsandbox
