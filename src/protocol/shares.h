// The shares of a run as guest-init mounts them: which host directory appears
// where, read-only or not, under which virtio mount tag, and the symlinks the
// guest root gets (/bin -> usr/bin). Planned on the host (sandbox/share_plan.h),
// carried in the guest configuration.
#pragma once

#include <string>
#include <vector>

namespace kvmsandbox {

struct Share {
    std::string host_path;   // absolute, normalized
    std::string guest_path;  // absolute mount point in the guest
    bool read_only = true;
    std::vector<std::string> hidden;  // paths relative to host_path the guest must not see
    std::string tag;                  // virtio-9p mount tag, set by plan_shares
    // Host system directories: only what an unprivileged host user could
    // read is visible (shares/confined_root.h). Host side only, not sent.
    bool world_readable_only = false;
};

struct SymlinkEntry {
    std::string path;    // in the guest, e.g. /bin
    std::string target;  // e.g. usr/bin
};

struct SharePlan {
    std::vector<Share> shares;
    std::vector<SymlinkEntry> symlinks;
};

}  // namespace kvmsandbox
