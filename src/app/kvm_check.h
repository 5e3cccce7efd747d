// Whether this host's KVM can boot a stock kernel, decided once per start
// from the KVM API and /sys (never /proc/cpuinfo, which hosts may hide).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace kvmsandbox::app {

// Fails when this host's /dev/kvm is PVM (kvm_pvm), which cannot boot a stock
// kernel, with one line naming the harness command that runs `argv` (the
// command line as the user typed it) inside a TCG-hosted VM instead.
// KVMSANDBOX_ALLOW_PVM=1 skips the check.
Result<void> check_host_kvm(const std::vector<std::string>& argv);

// Whether there is a /dev/kvm to open at all. Work that only a boot needs
// (unpacking the kernel into the cache) waits for it, so a host without KVM
// fails fast and keeps nothing.
bool kvm_device_present();

}  // namespace kvmsandbox::app
