#include "virtio/rng/rng.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>

namespace kvmsandbox {

namespace {

// Fills `buf` from getrandom(); returns how many bytes it could (all of
// them unless getrandom fails outright, which it should not on a kernel
// new enough to run us).
size_t fill_random(std::span<uint8_t> buf) {
    size_t done = 0;
    while (done < buf.size()) {
        const ssize_t n = ::getrandom(buf.data() + done, buf.size() - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        done += static_cast<size_t>(n);
    }
    return done;
}

}  // namespace

void VirtioRng::read_config(uint32_t, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), uint8_t{0});
}

Result<void> VirtioRng::activate(uint64_t /*features*/, std::span<SplitQueue* const> queues,
                                 VirtioInterrupt& irq) {
    std::lock_guard lock(mu_);
    if (queues.size() != 1 || !queues[0]) return fail("virtio-rng: needs its request queue");
    queue_ = queues[0];
    irq_ = &irq;
    broken_ = false;
    return {};
}

void VirtioRng::reset() {
    // Requests are served under the lock, so once we hold it none is in
    // progress and none will start on the old queue.
    std::lock_guard lock(mu_);
    queue_ = nullptr;
    irq_ = nullptr;
    broken_ = false;
}

void VirtioRng::fail_locked() {
    broken_ = true;
    if (irq_) irq_->set_needs_reset();
}

void VirtioRng::queue_notify(uint16_t /*q*/) {
    std::lock_guard lock(mu_);
    if (!queue_ || broken_ || !queue_->ready() || queue_->broken()) return;
    bool pushed = false;
    for (;;) {
        auto chain = queue_->pop();
        if (!chain) {
            fail_locked();
            break;
        }
        if (!*chain) break;
        const VirtqChain& c = **chain;
        if (c.readable_len != 0) {
            fail_locked();
            break;
        }
        requests_.fetch_add(1, std::memory_order_relaxed);
        // Filled front to back, stopping at the cap: the driver takes the
        // used length as the amount of entropy it got.
        uint32_t left = kMaxBytesPerRequest;
        uint32_t written = 0;
        for (const auto& buf : c.writable) {
            if (left == 0) break;
            const size_t want = std::min<size_t>(buf.size(), left);
            const size_t got = fill_random(buf.first(want));
            written += static_cast<uint32_t>(got);
            left -= static_cast<uint32_t>(got);
            if (got < want) {
                failures_.fetch_add(1, std::memory_order_relaxed);
                break;
            }
        }
        bytes_.fetch_add(written, std::memory_order_relaxed);
        if (!queue_->push_used(c.head, written)) {
            fail_locked();
            break;
        }
        pushed = true;
    }
    // Completed chains are signalled even when a later one broke the device.
    if (pushed && irq_ && queue_->needs_interrupt()) irq_->signal_queue(0);
}

VirtioDevice::Counters VirtioRng::counters() const {
    return {{"requests", requests_.load(std::memory_order_relaxed)},
            {"bytes", bytes_.load(std::memory_order_relaxed)},
            {"failures", failures_.load(std::memory_order_relaxed)}};
}

}  // namespace kvmsandbox
