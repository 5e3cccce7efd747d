// Which guest kernel to boot when the user did not name one: a stock
// distribution kernel from /boot, as the design's search order says.
#pragma once

#include <string>

#include "base/result.h"

namespace kvmsandbox {

struct KernelSearch {
    std::string boot_dir = "/boot";
    std::string host_release;  // uname -r; empty: ask the system
    std::string env_kernel;    // $KVMSANDBOX_KERNEL; empty: not set
};

// Returns the path of the kernel to use: env_kernel, else
// boot_dir/vmlinuz-<host release>, else the newest boot_dir/vmlinuz-* by
// version order. Fails with what was tried and what to install.
Result<std::string> find_default_kernel(const KernelSearch& search);

// The search for this host: /boot, uname -r, $KVMSANDBOX_KERNEL.
KernelSearch host_kernel_search();

}  // namespace kvmsandbox
