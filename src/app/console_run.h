// A VM whose serial console is this terminal (`kvmsandbox run --initrd`, and
// `run --disk IMG`, which boots the system on the first disk through our
// initramfs): no shares, no sandbox session; it ends when the guest powers
// off or resets, and `kvmsandbox stop` presses the ACPI power button.
#pragma once

#include <string>

#include "app/launcher.h"

namespace kvmsandbox::app {

struct ConsoleRequest {
    VmRequest vm;
    std::string initrd;               // the user's initrd; empty: boot the first disk
    std::string init = "/sbin/init";  // the disk's init
};

Result<Outcome> run_console(const ConsoleRequest& req);

}  // namespace kvmsandbox::app
