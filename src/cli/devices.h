// The optional devices of a VM (virtio-rng, virtio-blk disks, virtio-net with
// a slirp or tap backend), shared by `kvmsandbox -- CMD` and `kvmsandbox
// run`: their options, the guest modules they need, what guest-init must
// configure, and their creation on a Machine.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/result.h"
#include "base/worker_pool.h"
#include "cli/device_options.h"
#include "protocol/guest_config.h"
#include "vmm/machine.h"

namespace kvmsandbox::cli {

// Registers --net, --publish, --ip, --gateway, --dns, --disk and --no-rng.
// `default_net` is what --net means when not given.
void add_device_options(CLI::App& app, DeviceArgs& args, const std::string& default_net);

// The guest kernel modules the plan's devices need (besides the sandbox's).
std::vector<std::string> device_modules(const DevicePlan& plan);

// The "net" record for guest-init, when the guest has an interface to set up.
std::optional<GuestRunSpec::Net> guest_net_spec(const DevicePlan& plan);

// Creates the plan's devices on `m` (before it runs). `pool` runs the disks'
// file I/O and must outlive the machine's run.
Result<void> attach_devices(Machine& m, const DevicePlan& plan, WorkerPool& pool);

}  // namespace kvmsandbox::cli
