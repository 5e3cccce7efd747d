// Parks and releases the vCPU threads: `pause`/`resume` of an instance, and
// the moments when the host needs every vCPU outside KVM_RUN (register dumps,
// NMIs: vCPU ioctls wait for KVM_RUN to return, so a running vCPU would
// delay them indefinitely).
//
// Protocol: pause() raises the flag, kicks each vCPU out of KVM_RUN (the
// kicker sets immediate_exit before signalling, so a vCPU about to enter
// KVM_RUN returns at once) and waits until all have parked in checkpoint().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>

#include "base/result.h"

namespace kvmsandbox {

class VcpuControl {
  public:
    explicit VcpuControl(size_t vcpus) : vcpus_(vcpus) {}
    VcpuControl(const VcpuControl&) = delete;
    VcpuControl& operator=(const VcpuControl&) = delete;

    // Forces vCPU i out of KVM_RUN soon. Set before the vCPU threads start.
    void set_kicker(std::function<void(size_t)> kick) { kick_ = std::move(kick); }

    // Parks every vCPU; returns once all are parked. Nested pauses count:
    // each pause() needs its resume(). Fails (and undoes itself) when the
    // vCPUs do not park within `timeout` or the machine is stopping.
    Result<void> pause(std::chrono::milliseconds timeout);
    void resume();
    bool paused() const;

    // The machine is ending: parked vCPUs return from checkpoint() and no
    // pause waits any longer.
    void shutdown();

    // vCPU side, after each return from KVM_RUN: parks while paused.
    void checkpoint() {
        if (pause_requested_.load(std::memory_order_acquire)) park();
    }

  private:
    void park();

    const size_t vcpus_;
    std::function<void(size_t)> kick_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::atomic<bool> pause_requested_{false};
    unsigned depth_ = 0;
    size_t parked_ = 0;
    bool shutdown_ = false;
};

}  // namespace kvmsandbox
