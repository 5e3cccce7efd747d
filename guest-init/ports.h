// Finding the virtio-console ports by name. The host names each port
// (guest_protocol.h); the guest kernel exposes the name in
// <sysfs>/class/virtio-ports/<dev>/name, and <dev> is also the device node
// under /dev. Names arrive by a control message after the port exists, so a
// port is first seen with an empty name and must be polled for.
#pragma once

#include <expected>
#include <map>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace kvmsandbox::guest_init {

// Port name -> device name (e.g. "kvmsandbox.stdout" -> "vport1p2") of the
// ports that have a name now. A missing class directory is just "none yet".
std::map<std::string, std::string> discover_ports(const std::string& sysfs_root);

struct PortRequest {
    std::string name;
    int open_flags;  // O_RDONLY / O_WRONLY / O_RDWR (+ O_NONBLOCK); O_CLOEXEC is added
};

// Waits up to timeout_ms (polling every 10 ms) for all the named ports and
// opens <dev_root>/<dev> for each; fds in the order of REQS. The error names
// the ports still missing.
std::expected<std::vector<UniqueFd>, std::string> wait_and_open_ports(
    const std::vector<PortRequest>& reqs, const std::string& sysfs_root,
    const std::string& dev_root, int timeout_ms);

}  // namespace kvmsandbox::guest_init
