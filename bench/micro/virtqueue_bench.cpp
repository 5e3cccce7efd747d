// Descriptor rate of the split virtqueue's device side: every request of
// every virtio device goes through pop() and push_used(), so this is the
// floor under their per-request cost. The rings live in fake guest memory (a
// heap buffer) and a minimal driver refills the avail ring between batches;
// items_per_second is descriptors per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "base/guest_memory.h"
#include "base/result.h"
#include "virtio/transport/virtqueue.h"

namespace kvmsandbox {
namespace {

// What Linux's virtio drivers typically get from our devices.
constexpr uint16_t kQueueSize = 256;
constexpr uint64_t kRamBase = 0x100000;
constexpr uint64_t kDescGpa = kRamBase;
constexpr uint64_t kAvailGpa = kDescGpa + virtq::desc_table_bytes(kQueueSize);
constexpr uint64_t kUsedGpa = (kAvailGpa + virtq::avail_ring_bytes(kQueueSize) + 3) / 4 * 4;
constexpr uint64_t kBufGpa = (kUsedGpa + virtq::used_ring_bytes(kQueueSize) + 4095) / 4096 * 4096;
constexpr uint32_t kBufLen = 512;
constexpr uint64_t kRamSize = kBufGpa - kRamBase + uint64_t{kQueueSize} * kBufLen;

// A queue whose descriptor table holds kQueueSize / chain_len fixed chains.
// A driver reuses descriptors the same way once the ring is warm, so only the
// avail ring is rewritten per batch.
class Ring {
  public:
    explicit Ring(uint16_t chain_len)
        : ram_(kRamSize),
          mem_({MemoryRegion{kRamBase, kRamSize, ram_.data()}}),
          queue_(mem_, kQueueSize),
          chain_len_(chain_len) {
        for (uint16_t i = 0; i < kQueueSize; ++i) {
            const uint16_t pos = i % chain_len;
            // Readable then writable, like a block request (header, data, status).
            const bool writable = chain_len > 1 && pos >= (chain_len + 1) / 2;
            const bool last = pos + 1 == chain_len;
            vring_desc d{};
            d.addr = kBufGpa + uint64_t{i} * kBufLen;
            d.len = kBufLen;
            d.flags = static_cast<uint16_t>((writable ? VRING_DESC_F_WRITE : 0) |
                                            (last ? 0 : VRING_DESC_F_NEXT));
            d.next = last ? 0 : static_cast<uint16_t>(i + 1);
            mem_.write_obj(kDescGpa + sizeof(vring_desc) * i, d);
        }
    }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    Result<void> configure() {
        return queue_.configure(kQueueSize, kDescGpa, kAvailGpa, kUsedGpa, false);
    }

    uint16_t chains() const { return kQueueSize / chain_len_; }

    // Makes every chain available at once, as a driver under load fills the
    // ring before kicking.
    void publish_all() {
        for (uint16_t c = 0; c < chains(); ++c) {
            const uint16_t slot = avail_idx_ % kQueueSize;
            mem_.write_obj<uint16_t>(kAvailGpa + 4 + 2ull * slot,
                                     static_cast<uint16_t>(c * chain_len_));
            ++avail_idx_;
        }
        mem_.write_obj<uint16_t>(kAvailGpa + 2, avail_idx_);
    }

    SplitQueue& queue() { return queue_; }

  private:
    std::vector<uint8_t> ram_;
    GuestMemory mem_;  // before queue_, which keeps a reference to it
    SplitQueue queue_;
    const uint16_t chain_len_;
    uint16_t avail_idx_ = 0;
};

// One batch the way a device's queue handler runs it: drain the ring, hand
// every chain back, then decide on the interrupt once. Returns the number of
// descriptors walked, or -1 when the queue refused something.
int64_t drain(SplitQueue& q) {
    int64_t descs = 0;
    for (;;) {
        auto chain = q.pop();
        if (!chain) return -1;
        const auto& posted = *chain;
        if (!posted.has_value()) break;
        const VirtqChain& c = *posted;
        descs += static_cast<int64_t>(c.readable.size() + c.writable.size());
        if (!q.push_used(c.head, c.writable_len)) return -1;
    }
    benchmark::DoNotOptimize(q.needs_interrupt());
    return descs;
}

void BM_VirtqueuePopPush(benchmark::State& state) {
    const auto chain_len = static_cast<uint16_t>(state.range(0));
    Ring ring(chain_len);
    if (auto r = ring.configure(); !r) {
        state.SkipWithError(r.error().message.c_str());
        return;
    }
    // A layout mistake would make pop() fail fast and report a fantasy rate.
    ring.publish_all();
    if (drain(ring.queue()) != int64_t{ring.chains()} * chain_len) {
        state.SkipWithError("the first batch did not walk every descriptor");
        return;
    }

    int64_t descs = 0;
    for (auto _ : state) {
        ring.publish_all();
        const int64_t n = drain(ring.queue());
        if (n < 0) {
            state.SkipWithError("the virtqueue broke in the timed loop");
            return;
        }
        descs += n;
    }
    state.SetItemsProcessed(descs);
    state.counters["chains_per_second"] = benchmark::Counter(
        static_cast<double>(descs) / static_cast<double>(chain_len), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_VirtqueuePopPush)->Arg(1)->Arg(4)->ArgName("chain_len");

}  // namespace
}  // namespace kvmsandbox
