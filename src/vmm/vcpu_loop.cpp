#include "vmm/vcpu_loop.h"

#include <signal.h>

#include <cerrno>
#include <cstring>

#include <fmt/core.h>

#include "base/milestones.h"
#include "base/thread_role.h"

namespace kvmsandbox {

namespace {

void kick_handler(int) {}

// PVM and some nested setups give up on instructions they cannot emulate;
// say why a stock kernel cannot run rather than only the KVM code.
std::string internal_error_message(const kvm_run& run, unsigned id) {
    std::string what;
    switch (run.internal.suberror) {
        case KVM_INTERNAL_ERROR_EMULATION:
            what = "instruction emulation failed";
            break;
        case KVM_INTERNAL_ERROR_SIMUL_EX:
            what = "simultaneous exceptions";
            break;
        case KVM_INTERNAL_ERROR_DELIVERY_EV:
            what = "event delivery failed";
            break;
        default:
            what = fmt::format("suberror {}", run.internal.suberror);
            break;
    }
    return fmt::format(
        "KVM could not run the guest on vCPU {} ({}): this host's KVM cannot execute this "
        "kernel; on a PVM or limited nested KVM, run inside a TCG-hosted VM "
        "(scripts/kvm-in-tcg.sh)",
        id, what);
}

}  // namespace

int vcpu_kick_signal() {
    return SIGUSR1;
}

void install_vcpu_kick_handler() {
    struct sigaction sa {};
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    ::sigaction(vcpu_kick_signal(), &sa, nullptr);
}

namespace {

// A port access (possibly a string instruction: count > 1) on the port bus.
void handle_io(kvm_run& run, Bus& pio) {
    auto* base = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
    const size_t size = run.io.size;
    for (uint32_t i = 0; i < run.io.count; ++i) {
        std::span<uint8_t> data(base + i * size, size);
        if (run.io.direction == KVM_EXIT_IO_OUT)
            pio.write(run.io.port, data);
        else
            pio.read(run.io.port, data);
    }
}

void handle_mmio(kvm_run& run, Bus& mmio) {
    const size_t len = std::min<size_t>(run.mmio.len, sizeof(run.mmio.data));
    std::span<uint8_t> data(run.mmio.data, len);
    if (run.mmio.is_write)
        mmio.write(run.mmio.phys_addr, data);
    else
        mmio.read(run.mmio.phys_addr, data);
}

}  // namespace

void vcpu_loop(VcpuLoopContext ctx) {
    // Before the first KVM_RUN: from then on the guest drives this thread.
    enter_thread_role(ThreadRole::Vcpu);
    kvm_run* run = ctx.vcpu->run_area();
    milestones::mark(milestones::Milestone::FirstVcpuRun);
    auto stop_with = [&](StopReason r, std::string msg) {
        if (ctx.on_stop) ctx.on_stop(StopStatus{r, std::move(msg)});
    };
    while (!ctx.stop->load(std::memory_order_acquire)) {
        if (ctx.control) ctx.control->checkpoint();
        if (ctx.stop->load(std::memory_order_acquire)) return;
        int rc = ctx.vcpu->run_once();
        if (rc < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                run->immediate_exit = 0;
                continue;
            }
            stop_with(StopReason::HostError,
                      fmt::format("KVM_RUN on vCPU {}: {}", ctx.vcpu->id(), std::strerror(errno)));
            return;
        }
        if (ctx.counters) ctx.counters->total.fetch_add(1, std::memory_order_relaxed);
        switch (run->exit_reason) {
            case KVM_EXIT_IO:
                if (ctx.counters) ctx.counters->io.fetch_add(1, std::memory_order_relaxed);
                handle_io(*run, *ctx.pio);
                break;
            case KVM_EXIT_MMIO:
                if (ctx.counters) ctx.counters->mmio.fetch_add(1, std::memory_order_relaxed);
                handle_mmio(*run, *ctx.mmio);
                break;
            case KVM_EXIT_HLT:   // the in-kernel LAPIC handles HLT; tolerate it anyway
            case KVM_EXIT_INTR:  // a kick: the loop condition decides
                break;
            case KVM_EXIT_SHUTDOWN:
                // KVM has already reset the vCPU (on AMD), so its registers
                // tell nothing; the console log has the kernel's last words.
                stop_with(StopReason::TripleFault,
                          fmt::format("the guest triple-faulted on vCPU {} (its kernel crashed "
                                      "or reset the CPU on purpose, e.g. reboot=t)",
                                      ctx.vcpu->id()));
                return;
            case KVM_EXIT_SYSTEM_EVENT:
                if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
                    stop_with(StopReason::Reset, "");
                else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
                    stop_with(StopReason::Poweroff, "");
                else
                    stop_with(StopReason::TripleFault,
                              fmt::format("guest crash event {} on vCPU {}", run->system_event.type,
                                          ctx.vcpu->id()));
                return;
            case KVM_EXIT_INTERNAL_ERROR:
                stop_with(StopReason::InternalError, internal_error_message(*run, ctx.vcpu->id()));
                return;
            case KVM_EXIT_FAIL_ENTRY:
                stop_with(
                    StopReason::InternalError,
                    fmt::format("KVM could not enter the guest on vCPU {} (hardware "
                                "reason {:#x})",
                                ctx.vcpu->id(), run->fail_entry.hardware_entry_failure_reason));
                return;
            default:
                if (ctx.counters) ctx.counters->other.fetch_add(1, std::memory_order_relaxed);
                stop_with(StopReason::InternalError,
                          fmt::format("unexpected KVM exit {} on vCPU {}", run->exit_reason,
                                      ctx.vcpu->id()));
                return;
        }
    }
}

}  // namespace kvmsandbox
