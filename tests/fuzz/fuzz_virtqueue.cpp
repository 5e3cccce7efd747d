// fuzz_virtqueue: a SplitQueue over fake guest memory whose contents come
// from the input: descriptor table, avail ring, indirect tables and buffers
// are whatever the fuzzer wrote. The device side pops chains until the ring is
// empty or broken and returns them with push_used; every buffer it hands out
// must lie inside guest memory.
//
// Input layout:
//   [0]    flags: bits 0-2 log2(queue size) (1..64, 7 means 64), bit 3
//          EVENT_IDX, bit 4 unpop() the first chain and pop it again, bit 5
//          notifications off while popping, bit 6 a 4 KiB max_chain_bytes,
//          bit 7 hold all chains and push them back in reverse order
//   [1]    bits 0-4: how far to shift writable_len right for the used length
//          (>= 31 means 0), bit 7 end with a push_used of a head not in flight
//   [2..3] le16 added to the avail idx after the first round (0: no second
//          round), for ring wrap-around and a driver that moves idx too far
//   [4..]  guest memory region A from its first byte (the rest is zero)
// Region A (8 KiB at 0x10000) holds the rings at fixed places: descriptors at
// +0x0, avail ring at +0x400, used ring at +0x500; region B (4 KiB at
// 0x40000) is a second slot a descriptor may point into, filled with 0xB5.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "base/guest_memory.h"
#include "fuzz_check.h"
#include "virtio/transport/virtqueue.h"

namespace {

using namespace kvmsandbox;

constexpr uint64_t kRegionA = 0x10000;
constexpr uint64_t kRegionASize = 0x2000;
constexpr uint64_t kRegionB = 0x40000;
constexpr uint64_t kRegionBSize = 0x1000;
constexpr uint64_t kDesc = kRegionA;
constexpr uint64_t kAvail = kRegionA + 0x400;
constexpr uint64_t kUsed = kRegionA + 0x500;
constexpr uint16_t kMaxSize = 64;
constexpr size_t kHeader = 4;

struct Guest {
    // Separate allocations of the exact size: ASan flags any access past a region.
    std::vector<uint8_t> a = std::vector<uint8_t>(kRegionASize);
    std::vector<uint8_t> b = std::vector<uint8_t>(kRegionBSize, 0xb5);
    GuestMemory mem{{MemoryRegion{kRegionA, kRegionASize, a.data()},
                     MemoryRegion{kRegionB, kRegionBSize, b.data()}}};

    // The span lies entirely inside one region.
    bool inside(std::span<const uint8_t> s) const {
        for (const auto& r : mem.regions()) {
            const uint8_t* lo = r.host;
            const uint8_t* hi = r.host + r.size;
            if (s.data() >= lo && s.data() <= hi && s.size() <= size_t(hi - s.data())) return true;
        }
        return false;
    }
    uint16_t used_idx() const {
        return mem.read_obj<uint16_t>(kUsed + offsetof(vring_used, idx)).value_or(0);
    }
};

// Checks a popped chain; with `fill`, also writes its writable buffers the way
// a device would before returning it (which may rewrite rings that the driver
// let overlap them).
void check_chain(const Guest& g, const SplitQueue& q, const VirtqChain& c, uint32_t max_bytes,
                 bool fill) {
    FUZZ_CHECK(c.head < q.size());
    FUZZ_CHECK(!c.readable.empty() || !c.writable.empty());
    FUZZ_CHECK(c.readable.size() + c.writable.size() <= q.size());
    uint64_t r = 0, w = 0;
    for (auto s : c.readable) {
        FUZZ_CHECK(!s.empty() && g.inside(s));
        r += s.size();
    }
    for (auto s : c.writable) {
        FUZZ_CHECK(!s.empty() && g.inside(s));
        w += s.size();
    }
    FUZZ_CHECK(r == c.readable_len && w == c.writable_len);
    FUZZ_CHECK(r + w <= max_bytes);
    // Touch every byte: ASan reports it if a span were not real memory.
    volatile uint8_t sink = 0;
    for (auto s : c.readable)
        for (uint8_t v : s) sink = sink ^ v;
    for (auto s : c.writable) {
        for (uint8_t v : s) sink = sink ^ v;
        if (fill) std::fill(s.begin(), s.end(), uint8_t{0x5a});
    }
    (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < kHeader) return -1;  // not kept in the corpus
    const uint8_t flags = data[0];
    const uint8_t shift = data[1] & 0x1f;
    const bool bogus_push = data[1] & 0x80;
    const uint16_t idx_bump = static_cast<uint16_t>(data[2] | data[3] << 8);
    const uint16_t qsize = static_cast<uint16_t>(1u << std::min(flags & 7, 6));
    const bool event_idx = flags & 0x08;
    const bool do_unpop = flags & 0x10;
    const bool quiet = flags & 0x20;
    const uint32_t max_bytes = (flags & 0x40) ? 4096 : UINT32_MAX;
    const bool hold_all = flags & 0x80;

    Guest g;
    std::memcpy(g.a.data(), data + kHeader, std::min<size_t>(size - kHeader, kRegionASize));

    SplitQueue q(g.mem, kMaxSize);
    auto cfg = q.configure(qsize, kDesc, kAvail, kUsed, event_idx);
    FUZZ_CHECK(cfg.has_value());
    q.set_max_chain_bytes(max_bytes);
    if (quiet) q.set_notifications(false);

    std::vector<VirtqChain> held;
    uint64_t pushed = 0;
    auto push = [&](const VirtqChain& c) {
        const uint32_t written = shift >= 31 ? 0 : c.writable_len >> shift;
        // Not read from the ring: the device's own writes into buffers that
        // overlap the used ring may have changed it.
        const uint16_t before = q.next_used();
        auto r = q.push_used(c.head, written);
        FUZZ_CHECK(r.has_value());
        ++pushed;
        // The element is published: idx moved by one, the entry names the chain.
        FUZZ_CHECK(q.next_used() == static_cast<uint16_t>(before + 1));
        FUZZ_CHECK(g.used_idx() == q.next_used());
        const uint64_t elem =
            kUsed + offsetof(vring_used, ring) + sizeof(vring_used_elem) * (before % qsize);
        FUZZ_CHECK(g.mem.read_obj<uint32_t>(elem) == uint32_t{c.head});
        FUZZ_CHECK(g.mem.read_obj<uint32_t>(elem + offsetof(vring_used_elem, len)) == written);
        q.needs_interrupt();
    };

    // Pops until empty or broken; returns false once the queue broke.
    auto drain = [&](bool allow_unpop) {
        // pop() never hands out more than the avail ring allows, and the
        // harness never moves avail idx by more than 65535 in all: bounded.
        for (int i = 0; i < 4 * kMaxSize + 4; ++i) {
            auto r = q.pop();
            if (!r) {
                FUZZ_CHECK(q.broken() && q.errors() == 1);
                // Broken for good: nothing more comes out, nothing goes back.
                FUZZ_CHECK(!q.pop().has_value());
                FUZZ_CHECK(!q.push_used(0, 0).has_value());
                return false;
            }
            if (!*r) return true;
            VirtqChain c = std::move(**r);
            check_chain(g, q, c, max_bytes, !allow_unpop);
            if (allow_unpop) {
                // Given back untouched, the same chain comes out again.
                allow_unpop = false;
                q.unpop();
                auto again = q.pop();
                FUZZ_CHECK(again.has_value() && again->has_value());
                VirtqChain& d = **again;
                FUZZ_CHECK(d.head == c.head && d.readable.size() == c.readable.size() &&
                           d.writable.size() == c.writable.size() &&
                           d.readable_len == c.readable_len && d.writable_len == c.writable_len);
                for (size_t k = 0; k < d.readable.size(); ++k)
                    FUZZ_CHECK(d.readable[k].data() == c.readable[k].data() &&
                               d.readable[k].size() == c.readable[k].size());
                for (size_t k = 0; k < d.writable.size(); ++k)
                    FUZZ_CHECK(d.writable[k].data() == c.writable[k].data() &&
                               d.writable[k].size() == c.writable[k].size());
                check_chain(g, q, d, max_bytes, true);
                c = std::move(d);
            }
            if (hold_all)
                held.push_back(std::move(c));
            else
                push(c);
        }
        return true;
    };

    bool ok = drain(do_unpop);
    if (ok && idx_bump != 0) {
        const uint16_t idx =
            g.mem.read_obj<uint16_t>(kAvail + offsetof(vring_avail, idx)).value_or(0);
        FUZZ_CHECK(g.mem.write_obj<uint16_t>(kAvail + offsetof(vring_avail, idx),
                                             static_cast<uint16_t>(idx + idx_bump)));
        ok = drain(false);
    }
    if (ok) {
        std::reverse(held.begin(), held.end());
        for (const auto& c : held) push(c);
        FUZZ_CHECK(q.chains_popped() == pushed);
        FUZZ_CHECK(q.next_used() == static_cast<uint16_t>(pushed));
        q.set_notifications(true);
        FUZZ_CHECK(q.pop().has_value());
        FUZZ_CHECK(q.next_avail() == q.next_used());
        if (bogus_push) {
            // Nothing is in flight: any head is refused and breaks the queue.
            FUZZ_CHECK(!q.push_used(static_cast<uint16_t>(idx_bump % qsize), 0).has_value());
            FUZZ_CHECK(q.broken());
        }
    }
    // Spans popped before a break still point into guest memory.
    for (const auto& c : held) check_chain(g, q, c, max_bytes, false);
    return 0;
}
