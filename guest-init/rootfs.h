// The guest's new root: the mount plan (what is mounted where, in which
// order) and the file-system helpers that build the tmpfs root.
#pragma once

#include <sys/types.h>

#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "guest-init/config.h"

namespace kvmsandbox::guest_init {

struct MountStep {
    enum class Kind { Move, Mount };
    Kind kind = Kind::Mount;
    std::string source;  // Move: the current mount point; Mount: the device/tag
    std::string target;  // absolute, including the new root prefix
    std::string fstype;
    unsigned long flags = 0;
    std::string data;
    // 9p tags may show up a little after the driver: retry ENOENT for a while.
    bool retry_enoent = false;
    bool operator==(const MountStep&) const = default;
};

// Options of a virtio-9p share. access=client: the guest kernel checks
// permissions against the uid/mode the server reports, so CMD (running as the
// caller's uid) sees the host's permissions, while the server, running as
// the caller on the host, creates files owned by the caller. Read-only
// shares are the host system, which does not change during a run, so they
// cache everything (cache=loose); read-write shares are also written by the
// host, so they do not cache but still support mmap (cache=mmap; cache=none
// would break programs that mmap files they write). msize 512000 is the most
// the 6.x virtio transport takes (larger values are clamped, with a warning).
std::string ninep_options(bool read_only);

// In order: the initramfs's /dev, /proc, /sys moved under the new root, then
// /dev/pts, /dev/shm, /tmp, /run, then the shares in record order. The kernel
// file systems go first so a share below /tmp or /run (say the current
// directory is /tmp/x) is not hidden by the fresh tmpfs mounted later.
std::vector<MountStep> build_mount_plan(const GuestConfig& cfg, std::string_view new_root);

// ROOT + PATH for an absolute guest PATH ("/" is ROOT itself).
std::string join_root(std::string_view root, std::string_view path);

// Whether PATH is DIR or lies beneath it (by path components).
bool path_within(std::string_view path, std::string_view dir);

// Whether the home directory is already provided by a share (then it is left
// alone), rather than created empty and owned by the caller.
bool home_is_shared(const GuestConfig& cfg);

// mkdir -p; existing directories (even on read-only mounts) are fine.
std::expected<void, std::string> mkdir_p(const std::string& path, mode_t mode);

// Copies a small tree of directories, regular files and symlinks, keeping
// modes (owner: the caller, i.e. root in the guest).
std::expected<void, std::string> copy_tree(const std::string& src, const std::string& dst);

// Performs one step (mkdir -p of the target first). Mounts with
// retry_enoent are retried for up to enoent_timeout_ms.
std::expected<void, std::string> apply_mount_step(const MountStep& step, int enoent_timeout_ms);

}  // namespace kvmsandbox::guest_init
