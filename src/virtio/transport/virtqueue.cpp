#include "virtio/transport/virtqueue.h"

#include <cstring>

namespace kvmsandbox {

namespace {

// Guest-shared fields are read and written with single atomic accesses so
// the compiler can neither tear them nor re-read them after validation (the
// guest may rewrite them at any moment). Unaligned fields (an indirect table
// has no alignment rule) fall back to a volatile byte copy, read exactly once.
template <typename T>
T load(const uint8_t* p) {
    if (reinterpret_cast<uintptr_t>(p) % alignof(T) == 0)
        return __atomic_load_n(reinterpret_cast<const T*>(p), __ATOMIC_RELAXED);
    T v;
    auto* d = reinterpret_cast<unsigned char*>(&v);
    const volatile uint8_t* s = p;
    for (size_t i = 0; i < sizeof(T); ++i) d[i] = s[i];
    return v;
}

template <typename T>
void store(uint8_t* p, T v) {
    if (reinterpret_cast<uintptr_t>(p) % alignof(T) == 0) {
        __atomic_store_n(reinterpret_cast<T*>(p), v, __ATOMIC_RELAXED);
        return;
    }
    const auto* s = reinterpret_cast<const unsigned char*>(&v);
    volatile uint8_t* d = p;
    for (size_t i = 0; i < sizeof(T); ++i) d[i] = s[i];
}

vring_desc load_desc(const uint8_t* p) {
    return vring_desc{load<uint64_t>(p + offsetof(vring_desc, addr)),
                      load<uint32_t>(p + offsetof(vring_desc, len)),
                      load<uint16_t>(p + offsetof(vring_desc, flags)),
                      load<uint16_t>(p + offsetof(vring_desc, next))};
}

// The event fields sit right after the rings (virtio 1.x 2.7.6 and 2.7.8).
uint64_t used_event_offset(uint16_t size) {
    return offsetof(vring_avail, ring) + sizeof(__virtio16) * size;
}
uint64_t avail_event_offset(uint16_t size) {
    return offsetof(vring_used, ring) + sizeof(vring_used_elem) * size;
}

}  // namespace

SplitQueue::SplitQueue(const GuestMemory& mem, uint16_t max_size)
    : mem_(mem), max_size_(max_size) {}

Result<void> SplitQueue::configure(uint32_t size, uint64_t desc_gpa, uint64_t avail_gpa,
                                   uint64_t used_gpa, bool event_idx) {
    reset();
    if (size == 0 || !std::has_single_bit(size) || size > virtq::kMaxQueueSize || size > max_size_)
        return failf("virtqueue: invalid size {} (max {})", size, max_size_);
    // Alignment required by the virtio 1.x split ring layout.
    if (desc_gpa % VRING_DESC_ALIGN_SIZE || avail_gpa % VRING_AVAIL_ALIGN_SIZE ||
        used_gpa % VRING_USED_ALIGN_SIZE)
        return failf("virtqueue: misaligned rings desc={:#x} avail={:#x} used={:#x}", desc_gpa,
                     avail_gpa, used_gpa);
    auto desc = mem_.span(desc_gpa, virtq::desc_table_bytes(size));
    auto avail = mem_.span(avail_gpa, virtq::avail_ring_bytes(size));
    auto used = mem_.span(used_gpa, virtq::used_ring_bytes(size));
    if (!desc || !avail || !used)
        return failf("virtqueue: rings outside guest memory desc={:#x} avail={:#x} used={:#x}",
                     desc_gpa, avail_gpa, used_gpa);
    desc_ = *desc;
    avail_ = *avail;
    used_ = *used;
    event_idx_ = event_idx;
    size_ = static_cast<uint16_t>(size);
    return {};
}

void SplitQueue::reset() {
    size_ = 0;
    event_idx_ = false;
    notifications_ = true;
    desc_ = {};
    avail_ = {};
    used_ = {};
    last_avail_ = 0;
    used_idx_ = 0;
    signalled_used_ = 0;
    signalled_valid_ = false;
    in_flight_ = 0;
    broken_.store(false, std::memory_order_relaxed);
}

std::unexpected<Error> SplitQueue::mark_broken(std::string why) {
    broken_.store(true, std::memory_order_relaxed);
    errors_.fetch_add(1, std::memory_order_relaxed);
    return fail("virtqueue: " + why);
}

uint16_t SplitQueue::read_avail_idx() const {
    return load<uint16_t>(avail_.data() + offsetof(vring_avail, idx));
}

void SplitQueue::write_avail_event(uint16_t v) {
    store<uint16_t>(used_.data() + avail_event_offset(size_), v);
}

Result<std::optional<VirtqChain>> SplitQueue::pop() {
    if (!ready()) return fail("virtqueue: not configured");
    if (broken()) return fail("virtqueue: broken");

    uint16_t avail_idx = read_avail_idx();
    // Ring entries and descriptors written before idx must be seen after it.
    std::atomic_thread_fence(std::memory_order_acquire);
    uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
    if (pending == 0 && event_idx_ && notifications_) {
        // Ask for a kick on the next entry, then look again: the driver may
        // have published one between our read and the avail_event store.
        write_avail_event(last_avail_);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        avail_idx = read_avail_idx();
        std::atomic_thread_fence(std::memory_order_acquire);
        pending = static_cast<uint16_t>(avail_idx - last_avail_);
    }
    if (pending > size_)
        return mark_broken(
            fmt::format("avail idx moved by {} entries, queue size {}", pending, size_));
    if (pending == 0) return std::optional<VirtqChain>{};

    uint16_t head = load<uint16_t>(avail_.data() + offsetof(vring_avail, ring) +
                                   sizeof(__virtio16) * (last_avail_ & (size_ - 1)));
    ++last_avail_;
    if (event_idx_ && notifications_) write_avail_event(last_avail_);

    KS_TRY_ASSIGN(auto chain, walk_chain(head));
    popped_.fetch_add(1, std::memory_order_relaxed);
    ++in_flight_;
    return std::optional<VirtqChain>(std::move(chain));
}

Result<void> SplitQueue::add_buffer(VirtqChain& chain, const vring_desc& d, uint64_t& total) {
    // Bounded by size so a chain cannot make us build an unbounded vector.
    if (chain.readable.size() + chain.writable.size() >= size_)
        return mark_broken(fmt::format("chain {} longer than queue size {}", chain.head, size_));
    if (d.len == 0) return mark_broken(fmt::format("chain {}: zero-length buffer", chain.head));
    auto s = mem_.span(d.addr, d.len);
    if (!s)
        return mark_broken(fmt::format("chain {}: buffer {:#x}+{:#x} outside guest memory",
                                       chain.head, d.addr, d.len));
    total += d.len;
    if (total > max_chain_bytes_)
        return mark_broken(
            fmt::format("chain {}: total length above {}", chain.head, max_chain_bytes_));
    if (d.flags & VRING_DESC_F_WRITE) {
        chain.writable.push_back(*s);
        chain.writable_len += d.len;
    } else {
        if (!chain.writable.empty())
            return mark_broken(
                fmt::format("chain {}: readable buffer after a writable one", chain.head));
        chain.readable.push_back(*s);
        chain.readable_len += d.len;
    }
    return {};
}

Result<VirtqChain> SplitQueue::walk_chain(uint16_t head) {
    VirtqChain chain;
    chain.head = head;
    if (head >= size_) return mark_broken(fmt::format("head {} >= queue size {}", head, size_));

    uint64_t total = 0;
    uint16_t idx = head;
    // A chain without loops visits each descriptor of the table at most once.
    uint32_t visits = 0;
    for (;;) {
        if (++visits > size_) return mark_broken(fmt::format("chain {}: descriptor loop", head));
        vring_desc d = load_desc(desc_.data() + sizeof(vring_desc) * idx);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            // Only one table, ending the chain; its WRITE flag is ignored (spec).
            if (d.flags & VRING_DESC_F_NEXT)
                return mark_broken(fmt::format("chain {}: INDIRECT with NEXT", head));
            if (d.len == 0 || d.len % sizeof(vring_desc) || d.len > virtq::desc_table_bytes(size_))
                return mark_broken(
                    fmt::format("chain {}: bad indirect table length {}", head, d.len));
            auto table = mem_.span(d.addr, d.len);
            if (!table)
                return mark_broken(
                    fmt::format("chain {}: indirect table {:#x}+{:#x} outside "
                                "guest memory",
                                head, d.addr, d.len));
            const uint32_t n = d.len / sizeof(vring_desc);
            uint32_t ivisits = 0;
            uint16_t j = 0;
            for (;;) {
                if (++ivisits > n)
                    return mark_broken(fmt::format("chain {}: loop in indirect table", head));
                vring_desc e = load_desc(table->data() + sizeof(vring_desc) * j);
                if (e.flags & VRING_DESC_F_INDIRECT)
                    return mark_broken(fmt::format("chain {}: nested indirect table", head));
                KS_TRY(add_buffer(chain, e, total));
                if (!(e.flags & VRING_DESC_F_NEXT)) break;
                if (e.next >= n)
                    return mark_broken(
                        fmt::format("chain {}: indirect next {} >= {}", head, e.next, n));
                j = e.next;
            }
            return chain;
        }
        KS_TRY(add_buffer(chain, d, total));
        if (!(d.flags & VRING_DESC_F_NEXT)) return chain;
        if (d.next >= size_)
            return mark_broken(
                fmt::format("chain {}: next {} >= queue size {}", head, d.next, size_));
        idx = d.next;
    }
}

void SplitQueue::unpop() {
    if (in_flight_ == 0) return;
    --last_avail_;
    --in_flight_;
    popped_.fetch_sub(1, std::memory_order_relaxed);
}

Result<void> SplitQueue::push_used(uint16_t head, uint32_t written) {
    if (!ready()) return fail("virtqueue: not configured");
    if (broken()) return fail("virtqueue: broken");
    if (head >= size_ || in_flight_ == 0)
        return mark_broken(fmt::format("used head {} is not in flight", head));
    uint8_t* elem = used_.data() + offsetof(vring_used, ring) +
                    sizeof(vring_used_elem) * (used_idx_ & (size_ - 1));
    store<uint32_t>(elem + offsetof(vring_used_elem, id), head);
    store<uint32_t>(elem + offsetof(vring_used_elem, len), written);
    // The element must be visible before the index that publishes it.
    std::atomic_thread_fence(std::memory_order_release);
    ++used_idx_;
    store<uint16_t>(used_.data() + offsetof(vring_used, idx), used_idx_);
    --in_flight_;
    return {};
}

bool SplitQueue::needs_interrupt() {
    if (!ready()) return false;
    // Our used idx store must be ordered before reading the driver's
    // suppression fields (a store-load ordering: needs a full fence).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t new_used = used_idx_;
    const uint16_t old = signalled_used_;
    const bool valid = signalled_valid_;
    signalled_used_ = new_used;
    signalled_valid_ = true;
    if (valid && new_used == old) return false;
    if (event_idx_) {
        if (!valid) return true;
        uint16_t used_event = load<uint16_t>(avail_.data() + used_event_offset(size_));
        // Was used_event crossed by the entries in (old, new]?
        return vring_need_event(used_event, new_used, old);
    }
    return !(load<uint16_t>(avail_.data() + offsetof(vring_avail, flags)) &
             VRING_AVAIL_F_NO_INTERRUPT);
}

void SplitQueue::set_notifications(bool enabled) {
    if (!ready()) return;
    notifications_ = enabled;
    if (event_idx_) {
        if (enabled) write_avail_event(last_avail_);
    } else {
        store<uint16_t>(used_.data() + offsetof(vring_used, flags),
                        enabled ? 0 : VRING_USED_F_NO_NOTIFY);
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace kvmsandbox
