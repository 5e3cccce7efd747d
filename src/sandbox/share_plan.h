// What of the host the sandboxed command sees: the host system read-only, the
// current directory read-write at the same path, and the user's extra
// --share options. Pure planning: nothing is opened here.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "protocol/shares.h"

namespace kvmsandbox {

// Parses one --share value: HOST[:GUEST][:ro|:rw]. HOST must exist and be a
// directory; GUEST defaults to HOST.
Result<Share> parse_share_option(const std::string& value);

struct SharePlanInput {
    std::string cwd;           // the caller's working directory (absolute)
    std::vector<Share> extra;  // from --share
    std::string root = "/";    // host root to look at (tests use a temp dir)
    // Non-empty: a host directory that becomes the guest's root, read-write
    // (run --rootfs); the system directories are then mounted inside it.
    std::string guest_root;
};

Result<SharePlan> plan_shares(const SharePlanInput& in);

// The host system directories shown read-only, in mount order.
const std::vector<std::string>& system_dirs();
// Files under /etc the guest must never read.
const std::vector<std::string>& etc_secrets();

}  // namespace kvmsandbox
