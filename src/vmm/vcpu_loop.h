// The body of a vCPU thread: KVM_RUN, then route each exit to the port or
// MMIO bus, until the machine asks the vCPUs to stop.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "devices/bus.h"
#include "kvm/vcpu.h"
#include "vmm/stop_status.h"
#include "vmm/vcpu_control.h"

namespace kvmsandbox {

struct VcpuExitCounters {
    std::atomic<uint64_t> io{0}, mmio{0}, other{0}, total{0};
};

struct VcpuLoopContext {
    Vcpu* vcpu = nullptr;
    Bus* pio = nullptr;
    Bus* mmio = nullptr;
    const std::atomic<bool>* stop = nullptr;
    // Called once when this vCPU ends the VM (crash, internal error).
    std::function<void(StopStatus)> on_stop;
    VcpuExitCounters* counters = nullptr;
    // Pause/resume: the vCPU parks here between two KVM_RUNs.
    VcpuControl* control = nullptr;
};

// Installs the no-op signal handler used to kick vCPUs out of KVM_RUN.
void install_vcpu_kick_handler();
// Signal number used to kick a vCPU thread.
int vcpu_kick_signal();

void vcpu_loop(VcpuLoopContext ctx);

}  // namespace kvmsandbox
