#include "vmm/vcpu_control.h"

namespace kvmsandbox {

Result<void> VcpuControl::pause(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    if (shutdown_) return fail("the VM is stopping");
    if (depth_++ > 0) return {};  // already parked by an earlier pause
    pause_requested_.store(true, std::memory_order_release);
    lock.unlock();
    if (kick_)
        for (size_t i = 0; i < vcpus_; ++i) kick_(i);
    lock.lock();
    const bool parked =
        cv_.wait_for(lock, timeout, [this] { return shutdown_ || parked_ == vcpus_; });
    if (parked && !shutdown_) return {};
    const bool stopping = shutdown_;
    const size_t got = parked_;
    if (--depth_ == 0) {
        pause_requested_.store(false, std::memory_order_release);
        cv_.notify_all();
    }
    if (stopping) return fail("the VM is stopping");
    return failf("only {} of {} vCPUs stopped within {} ms", got, vcpus_, timeout.count());
}

void VcpuControl::resume() {
    std::lock_guard lock(mu_);
    if (depth_ == 0 || --depth_ > 0) return;
    pause_requested_.store(false, std::memory_order_release);
    cv_.notify_all();
}

bool VcpuControl::paused() const {
    std::lock_guard lock(mu_);
    return depth_ > 0 && parked_ == vcpus_;
}

void VcpuControl::shutdown() {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    pause_requested_.store(false, std::memory_order_release);
    cv_.notify_all();
}

void VcpuControl::park() {
    std::unique_lock lock(mu_);
    if (!pause_requested_.load(std::memory_order_relaxed) || shutdown_) return;
    ++parked_;
    cv_.notify_all();
    cv_.wait(lock,
             [this] { return shutdown_ || !pause_requested_.load(std::memory_order_relaxed); });
    --parked_;
}

}  // namespace kvmsandbox
