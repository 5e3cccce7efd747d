#include "virtio/9p/p9_device.h"

#include <algorithm>

namespace kvmsandbox {

VirtioP9::VirtioP9(std::string tag, std::unique_ptr<p9::P9Server> server, WorkerPool& pool)
    : tag_(tag.substr(0, kMaxTagLen)), server_(std::move(server)), pool_(pool) {}

VirtioP9::~VirtioP9() {
    std::unique_lock lock(mu_);
    queue_ = nullptr;
    irq_ = nullptr;
    ++generation_;
    wait_idle(lock);
}

void VirtioP9::read_config(uint32_t offset, std::span<uint8_t> data) {
    // struct virtio_9p_config (see the static_asserts in the header).
    constexpr size_t kLen = offsetof(virtio_9p_config, tag_len);
    constexpr size_t kTag = offsetof(virtio_9p_config, tag);
    for (size_t i = 0; i < data.size(); ++i) {
        const size_t at = offset + i;
        uint8_t v = 0;
        if (at == kLen)
            v = static_cast<uint8_t>(tag_.size());
        else if (at == kLen + 1)
            v = static_cast<uint8_t>(tag_.size() >> 8);
        else if (at >= kTag && at - kTag < tag_.size())
            v = static_cast<uint8_t>(tag_[at - kTag]);
        data[i] = v;
    }
}

Result<void> VirtioP9::activate(uint64_t /*features*/, std::span<SplitQueue* const> queues,
                                VirtioInterrupt& irq) {
    std::lock_guard lock(mu_);
    if (queues.size() != 1 || !queues[0]) return fail("virtio-9p: needs its request queue");
    queue_ = queues[0];
    irq_ = &irq;
    return {};
}

void VirtioP9::wait_idle(std::unique_lock<std::mutex>& lock) {
    idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
}

void VirtioP9::reset() {
    std::unique_lock lock(mu_);
    queue_ = nullptr;
    irq_ = nullptr;
    ++generation_;
    // Requests already on a worker finish first: after reset() returns the
    // device must not touch the queue or the guest's buffers again.
    wait_idle(lock);
}

void VirtioP9::queue_notify(uint16_t /*q*/) {
    std::lock_guard lock(mu_);
    if (!queue_ || !queue_->ready() || queue_->broken()) return;
    for (;;) {
        auto chain = queue_->pop();
        if (!chain) {
            if (irq_) irq_->set_needs_reset();
            return;
        }
        if (!*chain) return;
        ++in_flight_;
        requests_.fetch_add(1, std::memory_order_relaxed);
        pool_.submit([this, c = std::move(**chain), gen = generation_]() mutable {
            serve(std::move(c), gen);
        });
    }
}

void VirtioP9::serve(VirtqChain chain, uint64_t generation) {
    // The server reads the request and writes the reply in guest memory
    // directly; it never returns more than the writable bytes.
    const size_t n =
        server_->handle(p9::P9Server::IoVecs(chain.readable), p9::P9Server::IoVecs(chain.writable));
    std::lock_guard lock(mu_);
    if (generation == generation_ && queue_) {
        if (!queue_->push_used(chain.head, static_cast<uint32_t>(n))) {
            if (irq_) irq_->set_needs_reset();
        } else if (irq_ && queue_->needs_interrupt()) {
            irq_->signal_queue(0);
        }
    }
    if (--in_flight_ == 0) idle_cv_.notify_all();
}

}  // namespace kvmsandbox
