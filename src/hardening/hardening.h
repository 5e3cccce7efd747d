// When and how the VM process gives up what it no longer needs: once set-up
// is done (/dev/kvm, taps, shares, disks and the control socket open), every
// thread drops its capabilities (and, with --user, its identity) and loads
// the seccomp filter of its role.
//
// Each thread does this for itself when it enters its role
// (base/thread_role.h), because capabilities, uids and filters belong to a
// thread. Helper threads (worker pool, virtio-net receive, slirp) start
// during set-up and wait there until commit(); vCPU threads start after it.
// The main thread goes last, right after it has started the vCPU threads: a
// filter is inherited by threads created later, and the main thread's list
// has no clone. Nothing is started after that.
#pragma once

#include <optional>

#include "base/result.h"
#include "hardening/privileges.h"

namespace kvmsandbox::hardening {

// The debug hook: with this variable set to 1 the main thread makes a
// forbidden call (personality) right after loading its filter, while the
// guest runs, so a test can see that the filter is live and how it reports.
inline constexpr const char* kDebugForbiddenSyscallEnv = "KVMSANDBOX_DEBUG_FORBIDDEN_SYSCALL";

struct HardeningOptions {
    bool seccomp = true;  // --seccomp=off keeps the capability drop
    std::optional<UserSpec> user;
    bool debug_forbidden_syscall = false;
};

// Reads the debug hook's variable into `o`.
void read_hardening_debug_env(HardeningOptions& o);

// Hooks the plan into enter_thread_role. Once per process, before the VM's
// first helper thread starts.
Result<void> arm_hardening(const HardeningOptions& o);

// The end of set-up. Declared right after the first helper thread's owner
// (the worker pool), so that it ends before any of them on an early return:
// destroyed without commit(), it lets the waiting threads go unhardened (set-up
// failed; they only have to stop and be joined).
class HardeningGate {
  public:
    HardeningGate() = default;
    ~HardeningGate();
    HardeningGate(const HardeningGate&) = delete;
    HardeningGate& operator=(const HardeningGate&) = delete;

    // Installs the SIGSYS reporter and releases the waiting threads.
    Result<void> commit();
};

}  // namespace kvmsandbox::hardening
