// Test helpers shared by the virtio device tests: fake guest memory (a
// GuestMemory over a heap buffer), a scripted driver that lays out split
// virtqueues in it and publishes descriptor chains the way a guest would,
// and a VirtioInterrupt that records what the device raised.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/guest_memory.h"
#include "virtio/transport/virtio_device.h"
#include "virtio/transport/virtqueue.h"

namespace kvmsandbox::fake {

// Guest RAM over a heap buffer, with a bump allocator for rings and buffers.
class FakeGuest {
  public:
    explicit FakeGuest(uint64_t size = 1 << 20, uint64_t base = 0x10000)
        : buf_(size), mem_({MemoryRegion{base, size, buf_.data()}}), base_(base), next_(base) {}
    FakeGuest(const FakeGuest&) = delete;
    FakeGuest& operator=(const FakeGuest&) = delete;

    const GuestMemory& mem() const { return mem_; }
    uint64_t base() const { return base_; }
    uint64_t end() const { return base_ + buf_.size(); }

    // A fresh, zeroed guest range of `len` bytes.
    uint64_t alloc(uint64_t len, uint64_t align = 16) {
        uint64_t at = (next_ + align - 1) / align * align;
        EXPECT_LE(at + len, end()) << "fake guest memory exhausted";
        next_ = at + len;
        std::memset(host(at), 0, len);
        return at;
    }
    uint8_t* host(uint64_t gpa) { return buf_.data() + (gpa - base_); }
    void write(uint64_t gpa, std::span<const uint8_t> data) {
        ASSERT_TRUE(mem_.write(gpa, data.data(), data.size()));
    }
    void write(uint64_t gpa, std::string_view s) {
        write(gpa, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }
    std::vector<uint8_t> read(uint64_t gpa, uint64_t len) {
        std::vector<uint8_t> v(len);
        EXPECT_TRUE(mem_.read(gpa, v.data(), len));
        return v;
    }
    std::string read_str(uint64_t gpa, uint64_t len) {
        auto v = read(gpa, len);
        return std::string(v.begin(), v.end());
    }

  private:
    std::vector<uint8_t> buf_;
    GuestMemory mem_;
    uint64_t base_;
    uint64_t next_;
};

// One buffer of a chain, as the driver describes it.
struct Seg {
    uint64_t gpa = 0;
    uint32_t len = 0;
    bool writable = false;
};

// A chain the device has returned.
struct Used {
    uint16_t head = 0;
    uint32_t len = 0;
    std::vector<Seg> segs;  // what the driver had put in it

    // The first `len` bytes of the writable buffers (what the device wrote).
    std::vector<uint8_t> written(FakeGuest& g) const {
        std::vector<uint8_t> out;
        uint32_t left = len;
        for (const auto& s : segs) {
            if (!s.writable || left == 0) continue;
            uint32_t k = std::min(left, s.len);
            auto part = g.read(s.gpa, k);
            out.insert(out.end(), part.begin(), part.end());
            left -= k;
        }
        return out;
    }
};

// The driver side of one split virtqueue, plus the device side SplitQueue
// (as the transport would own it), configured on the same rings.
class DriverQueue {
  public:
    DriverQueue(FakeGuest& g, uint16_t size, uint16_t max_size, bool event_idx = false)
        : g_(g), size_(size), event_idx_(event_idx), q_(g.mem(), max_size) {
        desc_ = g.alloc(virtq::desc_table_bytes(size), VRING_DESC_ALIGN_SIZE);
        avail_ = g.alloc(virtq::avail_ring_bytes(size), VRING_AVAIL_ALIGN_SIZE);
        used_ = g.alloc(virtq::used_ring_bytes(size), VRING_USED_ALIGN_SIZE);
        configure();
    }
    DriverQueue(const DriverQueue&) = delete;
    DriverQueue& operator=(const DriverQueue&) = delete;

    // Starts over on the same rings (what a driver does after a device reset).
    void configure() {
        std::memset(g_.host(desc_), 0, virtq::desc_table_bytes(size_));
        std::memset(g_.host(avail_), 0, virtq::avail_ring_bytes(size_));
        std::memset(g_.host(used_), 0, virtq::used_ring_bytes(size_));
        avail_idx_ = 0;
        seen_used_ = 0;
        chains_.clear();
        free_.clear();
        for (uint16_t i = 0; i < size_; ++i) free_.push_back(static_cast<uint16_t>(size_ - 1 - i));
        auto r = q_.configure(size_, desc_, avail_, used_, event_idx_);
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }

    SplitQueue& device() { return q_; }
    SplitQueue* ptr() { return &q_; }
    FakeGuest& guest() { return g_; }

    // Writes descriptor `i` of the table directly (for hostile chains).
    void write_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
        vring_desc d{addr, len, flags, next};
        ASSERT_TRUE(g_.mem().write_obj(desc_ + 16ull * i, d));
    }
    // Makes `head` available.
    void publish(uint16_t head) {
        ASSERT_TRUE(g_.mem().write_obj<uint16_t>(
            avail_ + offsetof(vring_avail, ring) + sizeof(__virtio16) * (avail_idx_ % size_),
            head));
        ++avail_idx_;
        ASSERT_TRUE(g_.mem().write_obj<uint16_t>(avail_ + offsetof(vring_avail, idx), avail_idx_));
    }
    void set_avail_flags(uint16_t f) { ASSERT_TRUE(g_.mem().write_obj<uint16_t>(avail_, f)); }

    // Lays out `segs` as a chain of free descriptors and publishes it.
    uint16_t add_chain(const std::vector<Seg>& segs) {
        EXPECT_FALSE(segs.empty());
        if (free_.size() < segs.size()) {
            ADD_FAILURE() << "driver queue out of descriptors";
            return 0;
        }
        std::vector<uint16_t> idx;
        for (size_t i = 0; i < segs.size(); ++i) {
            idx.push_back(free_.back());
            free_.pop_back();
        }
        for (size_t i = 0; i < segs.size(); ++i) {
            uint16_t flags = segs[i].writable ? VRING_DESC_F_WRITE : 0;
            uint16_t next = 0;
            if (i + 1 < segs.size()) {
                flags |= VRING_DESC_F_NEXT;
                next = idx[i + 1];
            }
            write_desc(idx[i], segs[i].gpa, segs[i].len, flags, next);
        }
        chains_[idx[0]] = {segs, idx};
        publish(idx[0]);
        return idx[0];
    }
    // A chain of one device-readable buffer holding `data`.
    uint16_t add_out(std::span<const uint8_t> data) {
        uint64_t a = g_.alloc(data.size());
        g_.write(a, data);
        return add_chain({{a, static_cast<uint32_t>(data.size()), false}});
    }
    uint16_t add_out(std::string_view s) {
        return add_out(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }
    // A chain of device-readable buffers, one per piece.
    uint16_t add_out_pieces(const std::vector<std::string>& pieces) {
        std::vector<Seg> segs;
        for (const auto& p : pieces) {
            uint64_t a = g_.alloc(p.size());
            g_.write(a, p);
            segs.push_back({a, static_cast<uint32_t>(p.size()), false});
        }
        return add_chain(segs);
    }
    // A chain of one device-writable buffer of `len` bytes.
    uint16_t add_in(uint32_t len) { return add_chain({{g_.alloc(len), len, true}}); }

    uint16_t used_idx() { return *g_.mem().read_obj<uint16_t>(used_ + offsetof(vring_used, idx)); }
    uint16_t avail_idx() const { return avail_idx_; }
    size_t outstanding() const { return chains_.size(); }

    // The used entries added since the last call; their descriptors are freed.
    std::vector<Used> collect_used() {
        std::vector<Used> out;
        const uint16_t idx = used_idx();
        while (seen_used_ != idx) {
            const uint64_t e =
                used_ + offsetof(vring_used, ring) + sizeof(vring_used_elem) * (seen_used_ % size_);
            Used u;
            u.head = static_cast<uint16_t>(
                *g_.mem().read_obj<uint32_t>(e + offsetof(vring_used_elem, id)));
            u.len = *g_.mem().read_obj<uint32_t>(e + offsetof(vring_used_elem, len));
            auto it = chains_.find(u.head);
            EXPECT_NE(it, chains_.end()) << "device returned head " << u.head << " not in flight";
            if (it != chains_.end()) {
                u.segs = it->second.segs;
                for (uint16_t d : it->second.descs) free_.push_back(d);
                chains_.erase(it);
            }
            out.push_back(std::move(u));
            ++seen_used_;
        }
        return out;
    }

  private:
    struct Chain {
        std::vector<Seg> segs;
        std::vector<uint16_t> descs;
    };
    FakeGuest& g_;
    const uint16_t size_;
    const bool event_idx_;
    SplitQueue q_;
    uint64_t desc_ = 0, avail_ = 0, used_ = 0;
    uint16_t avail_idx_ = 0;
    uint16_t seen_used_ = 0;
    std::map<uint16_t, Chain> chains_;
    std::vector<uint16_t> free_;
};

// Records the interrupts a device raises. Thread-safe; wait_* helpers let a
// test wait for devices that complete work on other threads.
class FakeInterrupt : public VirtioInterrupt {
  public:
    void signal_queue(uint16_t q) override {
        std::lock_guard lock(mu_);
        queue_signals_.push_back(q);
        cv_.notify_all();
    }
    void signal_config() override {
        std::lock_guard lock(mu_);
        ++config_signals_;
        cv_.notify_all();
    }
    void set_needs_reset() override {
        std::lock_guard lock(mu_);
        ++needs_reset_;
        cv_.notify_all();
    }

    std::vector<uint16_t> queue_signals() {
        std::lock_guard lock(mu_);
        return queue_signals_;
    }
    size_t signals_for(uint16_t q) {
        std::lock_guard lock(mu_);
        return static_cast<size_t>(std::count(queue_signals_.begin(), queue_signals_.end(), q));
    }
    int config_signals() {
        std::lock_guard lock(mu_);
        return config_signals_;
    }
    int needs_reset() {
        std::lock_guard lock(mu_);
        return needs_reset_;
    }
    void clear() {
        std::lock_guard lock(mu_);
        queue_signals_.clear();
        config_signals_ = 0;
        needs_reset_ = 0;
    }
    // Waits until queue `q` was signalled at least `n` times in all.
    bool wait_signals(uint16_t q, size_t n,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, [&] {
            return static_cast<size_t>(
                       std::count(queue_signals_.begin(), queue_signals_.end(), q)) >= n;
        });
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<uint16_t> queue_signals_;
    int config_signals_ = 0;
    int needs_reset_ = 0;
};

inline std::vector<uint8_t> bytes(std::string_view s) {
    return std::vector<uint8_t>(s.begin(), s.end());
}

}  // namespace kvmsandbox::fake
