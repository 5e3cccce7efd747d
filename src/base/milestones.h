// Milestones of one run on the host's clock, for KVMSANDBOX_TIMING=1: the
// start-to-exit time split into VMM set-up, kernel boot to init, init to CMD
// and CMD's end to our exit (scripts/bench.sh reports them). Recording is a
// relaxed atomic store, cheap enough to leave on; only the report is opt-in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kvmsandbox::milestones {

enum class Milestone {
    FirstVcpuRun,     // set-up is over: the first KVM_RUN is about to happen
    GuestCmdStarted,  // guest-init's "phase" line arrived: CMD has been started
    StatusReceived,   // CMD's status line arrived
    kCount,
};

// Records the first occurrence of M (later calls are ignored).
void mark(Milestone m);
// Milliseconds from process start to M, if it happened.
std::optional<double> at_ms(Milestone m);
// Milliseconds from process start to now.
double now_ms();

// The guest's own clock (CLOCK_BOOTTIME, ns) when guest-init started and when
// it had started CMD.
void set_guest_phases(uint64_t init_ns, uint64_t cmd_ns);

// Whether the user asked for the report (KVMSANDBOX_TIMING=1).
bool report_requested();
// "timing: vmm-setup 41.0 ms, kernel-boot 830.2 ms, init-to-cmd 95.3 ms,
// cmd 4.1 ms, exit 12.0 ms, total 982.6 ms", or nullopt when the run did not
// reach every milestone (no VM, or CMD never started).
std::optional<std::string> report_line();

}  // namespace kvmsandbox::milestones
