// The sandbox: a host command run in a VM that sees the host's system
// read-only and the current directory read-write, its streams and exit status
// handed back as if it had run here (`kvmsandbox -- CMD`, and `run` without
// --initrd, which runs the user's shell this way). Builds the boot image and
// the guest's run configuration, then launches through app/launcher.h.
#pragma once

#include <string>
#include <vector>

#include "app/launcher.h"
#include "sandbox/share_plan.h"

namespace kvmsandbox::app {

struct SandboxRequest {
    VmRequest vm;
    std::vector<std::string> command;
    std::vector<Share> shares;  // --share, parsed
    std::string rootfs;         // a `setup` root to boot with, read-write
    std::string console_log;    // keep kernel and init messages here
    double timeout = 0;         // seconds; 0: none
};

Result<Outcome> run_sandbox(const SandboxRequest& req);

}  // namespace kvmsandbox::app
