// The options every VM takes (kernel, size, devices, hardening, name), shared
// by `kvmsandbox -- CMD` and `kvmsandbox run`, and their translation into the
// launcher's request. Parsing only: the VM is built by app/.
#pragma once

#include <string>
#include <vector>

#include "app/launcher.h"
#include "app/sandbox_run.h"
#include "cli/device_options.h"
#include "cli/hardening_options.h"

namespace kvmsandbox::cli {

struct VmOptions {
    std::string kernel, mem, params, name, console_log;
    unsigned cpus = 1;
    bool verbose = false;
    bool balloon = false;
    std::vector<std::string> shares;  // --share values as typed
    std::string rootfs;
    DeviceArgs devices;
    HardeningArgs hardening;
};

// Checks and converts what every VM takes; `kind` is what `list` shows.
Result<app::VmRequest> vm_request(const VmOptions& o, const std::string& kind);

// The sandbox request for `command` (the --share values parsed).
Result<app::SandboxRequest> sandbox_request(const VmOptions& o, std::vector<std::string> command,
                                            const std::string& kind, double timeout);

// Runs a launch and turns its result into the exit code, printing the
// outcome's message or the error on one line.
int finish_launch(const Result<app::Outcome>& r);

}  // namespace kvmsandbox::cli
