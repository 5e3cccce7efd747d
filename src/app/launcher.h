// The one launcher every VM goes through: the sandbox (`kvmsandbox -- CMD`,
// `run` without --initrd), `run --initrd` and `run --disk`. From a request
// (what every VM has: size, kernel, devices, hardening, name) and a
// MachineConfig (what to boot), it claims the instance name, checks this
// host's KVM, builds the Machine, its devices and the control socket, hardens
// the process and runs the guest. What differs by kind of VM is a Workload.
//
// Order matters and is kept here only: the user's mistakes are reported before
// anything about the host; the name is claimed before anything slow; work a
// boot alone needs (unpacking the kernel) waits until KVM is known usable;
// hardening is armed before the first helper thread and committed once
// everything is open, before the guest runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "app/devices.h"
#include "base/result.h"
#include "base/worker_pool.h"
#include "hardening/hardening.h"
#include "vmm/machine.h"

namespace kvmsandbox::app {

// What every VM has, whatever its kind; the CLI fills it from the options.
struct VmRequest {
    std::string kernel;  // empty: the default kernel (boot/kernel_locator.h)
    std::string params;  // appended to the kernel command line
    unsigned cpus = 1;
    uint64_t mem_bytes = 512ull << 20;
    std::string name;  // instance name; empty: generated
    std::string kind;  // what `list` shows: "sandbox" or "run"
    bool balloon = false;
    bool verbose = false;
    DevicePlan devices;
    hardening::HardeningOptions hardening;
    std::vector<std::string> argv;  // the command line as typed, for messages
};

// How a launch ended: the process's exit code and, when not empty, the one
// line the CLI prints on stderr.
struct Outcome {
    int exit_code = 0;
    std::string message;
};

// The part of a VM that its kind decides. Calls come in this order, all on
// the launching thread: attach_early, attach, before_run, (the guest runs;
// request_shutdown and after_resume on the loop thread), after_run, outcome.
class Workload {
  public:
    virtual ~Workload() = default;
    // Devices that must exist before the worker pool starts.
    virtual Result<void> attach_early(Machine& /*m*/) { return {}; }
    // Devices whose I/O runs on the worker pool.
    virtual Result<void> attach(Machine& /*m*/, WorkerPool& /*pool*/) { return {}; }
    // Last set-up on the loop before the guest runs (timers, signal handler).
    virtual Result<void> before_run(Machine& /*m*/) { return {}; }
    // `kvmsandbox stop`: ask the guest to end (it is forced off later).
    virtual void request_shutdown(Machine& m) = 0;
    // `kvmsandbox resume` has let the guest run again (loop thread).
    virtual void after_resume(Machine& /*m*/) {}
    // The guest has stopped; output still in flight is to be delivered.
    virtual void after_run() {}
    virtual Outcome outcome(const StopStatus& st) = 0;
};

// Checks the request's sizes with the user's option names (--mem, --cpus).
Result<void> check_request(const VmRequest& req);

// The default kernel when the request names none.
Result<std::string> kernel_for(const VmRequest& req);

// Builds and runs the VM; `cfg` says what to boot (kernel, initrd, console),
// the request the rest.
Result<Outcome> launch(const VmRequest& req, MachineConfig cfg, Workload& workload);

}  // namespace kvmsandbox::app
