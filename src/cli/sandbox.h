// The sandbox run, shared by `kvmsandbox -- CMD` and by `kvmsandbox run`
// without an initrd (a shell in the same kind of VM).
#pragma once

#include <string>
#include <vector>

#include "cli/device_options.h"
#include "cli/hardening_options.h"

namespace kvmsandbox::cli {

struct SandboxOptions {
    std::vector<std::string> command;
    std::string kernel, mem = "1G", console_log, name;
    DeviceArgs devices;
    HardeningArgs hardening;
    std::string params;  // appended to the kernel command line
    std::string rootfs;  // a `setup` root to boot with, read-write
    std::vector<std::string> shares;
    unsigned cpus = 2;
    double timeout = 0;
    bool verbose = false;
    bool balloon = false;
    std::string kind = "sandbox";  // what `list` shows: "sandbox" or "run"
};

int run_sandbox(const SandboxOptions& o);

}  // namespace kvmsandbox::cli
