// The directories every guest root starts with (mount points and the usual
// writable places; the rest comes from the shares). Used for the in-memory
// initramfs skeleton and for the named root directories of `setup`.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace kvmsandbox {

struct SkeletonDir {
    std::string path;  // relative, e.g. "var/tmp"
    mode_t mode;
};

// Parents come before their children.
const std::vector<SkeletonDir>& root_skeleton_dirs();

}  // namespace kvmsandbox
