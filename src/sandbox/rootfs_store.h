// Named guest root directories (`kvmsandbox setup NAME`, then
// `kvmsandbox run --rootfs NAME`): a directory on the host that a VM mounts
// read-write over virtio-9p as its root, so what the guest writes outside
// the host system directories (/root, /home, /etc changes, /var) persists
// from one run to the next, like lkvm's ~/.lkvm/NAME.
#pragma once

#include <string>

#include "base/result.h"

namespace kvmsandbox {

// $KVMSANDBOX_ROOTFS_DIR, else $HOME/.kvmsandbox/rootfs.
Result<std::string> rootfs_store_dir();

// Creates STORE/NAME with the root skeleton (the host's /etc, /usr, ... are
// still mounted over it at run time); fails if it exists. Returns its path.
Result<std::string> create_rootfs(const std::string& name);

// The path of an existing rootfs NAME, or an error naming `setup`.
Result<std::string> find_rootfs(const std::string& name);

}  // namespace kvmsandbox
