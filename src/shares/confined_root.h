// The confinement core of a shared host directory: every rule that keeps a
// guest inside its share, independent of the protocol that carries the
// requests (9P today, virtio-fs next), so each server states only its wire
// format and leaves the host-side safety here.
//
// Trust boundary: every name, mode and flag given to this class comes from the
// guest and is hostile. Confinement rests on file descriptors, never on path
// strings:
//  - a name is one component: "", ".", "..", anything with '/' or NUL is
//    EINVAL (check_name);
//  - a lookup resolves with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//    RESOLVE_NO_MAGICLINKS) and O_NOFOLLOW relative to a directory fd, so a
//    lookup onto a symlink yields the symlink itself and nothing ever resolves
//    through one (the guest resolves its own symlinks);
//  - ".." at the root stays at the root; ".." elsewhere is proved to still lie
//    beneath the root by climbing to it (a directory moved out by the host is
//    refused);
//  - reopen() opens exactly the inode an O_PATH fd holds, through
//    /proc/self/fd, and only regular files and directories (a symlink, device,
//    fifo or socket is never opened on the host);
//  - hidden entries (paths given at construction) are recognised by device and
//    inode, so a hard link or rename inside the share does not reveal them;
//  - a world_readable_only share (the host's system directories) shows only
//    what an unprivileged host user could reach and read, whatever uid we run
//    as: a step from directory D to entry E needs S_IXOTH on D and S_IROTH on
//    E (symlinks are always shown as links; the guest resolves them and every
//    target is checked when walked); the root itself is always visible. An
//    invisible entry is absent: the walk answers ENOENT and readdir leaves it
//    out, so no fid ever holds it and nothing else can reveal it;
//  - a read-only share answers EROFS to every mutation;
//  - modes lose S_ISUID, and S_ISGID on non-directories, on create and chmod;
//    our umask is undone so a created file has the mode asked for; device
//    nodes are never made (EPERM).
//
// Errors are errno values: both protocols answer with an errno on the wire.
// Thread safety: after construction every method is const and may run on
// several threads at once.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/unique_fd.h"

namespace kvmsandbox::shares {

template <typename T = void>
using ErrnoResult = std::expected<T, int>;

using SharedFd = std::shared_ptr<const UniqueFd>;

// Plain stat helpers that never follow a final symlink.
ErrnoResult<struct stat> stat_fd(int fd);
ErrnoResult<struct stat> stat_at(int dir, const std::string& name);

// "/proc/self/fd/N": for the calls (chmod, link, xattrs) that have no
// AT_EMPTY_PATH form usable without privileges.
std::string fd_path(int fd);

// A single path component named by the guest (see the header).
ErrnoResult<void> check_name(std::string_view name);

// A symlink's target is stored as is (only the guest resolves it), but it
// must be a non-empty C string.
ErrnoResult<void> check_symlink_target(std::string_view target);

// Drops what a guest must not obtain on the host: set-uid anywhere, set-gid on
// files (on directories it only means "inherit the group").
mode_t sanitize_mode(uint32_t mode, bool is_dir);

// The file type mknod may make: regular (also for type 0), fifo, socket.
// Character and block devices: EPERM; anything else: EINVAL.
ErrnoResult<mode_t> node_type(uint32_t mode);

class ConfinedRoot {
  public:
    // root_dir: a directory fd (O_PATH is fine). A bad root gives an invalid
    // object (valid() false) whose operations all fail; a host without procfs
    // at /proc/self/fd gives one that cannot reopen (can_reopen() false).
    // hidden: paths relative to the root, resolved now (absent ones are ignored).
    // world_readable_only: the visibility rule of the header (system shares).
    ConfinedRoot(UniqueFd root_dir, bool read_only, const std::vector<std::string>& hidden,
                 bool world_readable_only = false);

    bool valid() const { return root_ != nullptr; }
    bool can_reopen() const { return proc_fd_.valid(); }
    bool read_only() const { return read_only_; }
    bool world_readable_only() const { return world_readable_only_; }
    const SharedFd& root() const { return root_; }

    // EROFS on a read-only share.
    ErrnoResult<void> check_writable() const;
    // EROFS on a read-only share when host open flags would write or truncate.
    ErrnoResult<void> check_open_flags(int host_flags) const;

    bool is_hidden(dev_t dev, ino_t ino) const {
        return !hidden_.empty() && hidden_.count({dev, ino}) != 0;
    }
    // ENOENT for a hidden object: it does not exist for the guest.
    ErrnoResult<void> check_visible(const struct stat& st) const;
    // A walk step from the directory `dir` onto `entry` (its name looked up
    // in dir): ENOENT when the entry is hidden or, on a world_readable_only
    // share, when dir lacks S_IXOTH or entry (not a symlink) lacks S_IROTH.
    ErrnoResult<void> check_step(const struct stat& dir, const struct stat& entry) const;
    // A walk step onto ".." that left a directory (parent: where it landed).
    // The root is always visible; elsewhere the rule asks what a step down
    // into parent would have: S_IROTH to be seen and S_IXOTH to have been
    // passed through (its own parent's S_IXOTH was checked on the way down).
    ErrnoResult<void> check_parent(const struct stat& parent) const;
    // Whether readdir of the directory dir_fd (stat `dir`) lists the entry
    // `name` (d_type and d_ino from getdents). "." and ".." always are; a
    // world_readable_only share stats the entry (a d_type carries no mode),
    // other shares never do.
    bool listed(int dir_fd, const struct stat& dir, const char* name, unsigned char d_type,
                ino_t d_ino) const;
    bool is_root(const struct stat& st) const {
        return st.st_dev == root_dev_ && st.st_ino == root_ino_;
    }
    ErrnoResult<bool> is_root(int fd) const;

    // openat2 beneath dir_fd with no symlink resolution at all.
    static ErrnoResult<UniqueFd> open_beneath(int dir_fd, const char* name, uint64_t flags,
                                              uint64_t mode);
    // The O_PATH|O_NOFOLLOW descriptor of `name` (checked by check_name) in dir_fd.
    static ErrnoResult<UniqueFd> lookup(int dir_fd, std::string_view name);
    // ".." of a directory that is not the root (callers keep the root for ".."
    // at the root): EXDEV if climbing reaches the host's "/" first.
    ErrnoResult<UniqueFd> parent_of(int dir_fd) const;

    // Opens the inode of an O_PATH fd with `flags` (never O_CREAT): regular
    // files and directories only (ELOOP for a symlink, ENXIO for the rest),
    // directories read-only (EISDIR).
    ErrnoResult<UniqueFd> reopen(int path_fd, int flags) const;
    // An O_PATH descriptor of the inode an open fd holds.
    ErrnoResult<UniqueFd> path_of(int open_fd) const;

    // Creates or opens the regular file `name` in dir_fd with host open flags
    // (never through a symlink; an existing fifo does not block). excl: an
    // existing file is EEXIST. `mode` is sanitized here.
    struct Created {
        UniqueFd file;  // open with `host_flags`
        UniqueFd path;  // O_PATH of the same inode
        struct stat st;
    };
    ErrnoResult<Created> create_file(int dir_fd, const std::string& name, int host_flags,
                                     uint32_t mode, bool excl) const;
    ErrnoResult<struct stat> make_dir(int dir_fd, const std::string& name, uint32_t mode) const;
    ErrnoResult<struct stat> make_node(int dir_fd, const std::string& name, uint32_t mode) const;
    ErrnoResult<struct stat> make_symlink(int dir_fd, const std::string& name,
                                          const std::string& target) const;
    // A hard link to the (non-directory) inode of path_fd as `name` in dir_fd.
    ErrnoResult<void> link(int path_fd, int dir_fd, const std::string& name) const;
    ErrnoResult<void> rename(int old_dir, const std::string& old_name, int new_dir,
                             const std::string& new_name) const;
    ErrnoResult<void> unlink(int dir_fd, const std::string& name, bool is_dir) const;
    // Rename or remove the entry `name` of parent_fd only while it still is
    // the inode of path_fd (the name may meanwhile denote another file): ENOENT.
    ErrnoResult<void> rename_entry(int path_fd, int parent_fd, const std::string& name, int new_dir,
                                   const std::string& new_name) const;
    ErrnoResult<void> remove_entry(int path_fd, int parent_fd, const std::string& name) const;
    // chmod of the inode of path_fd (st: its stat), sanitized; symlinks: EOPNOTSUPP.
    ErrnoResult<void> chmod(int path_fd, const struct stat& st, uint32_t mode) const;

  private:
    ErrnoResult<void> fix_mode(int dir_fd, const std::string& name, mode_t mode) const;
    ErrnoResult<void> same_entry(int path_fd, int parent_fd, const std::string& name,
                                 struct stat* st) const;

    SharedFd root_;
    dev_t root_dev_ = 0;
    ino_t root_ino_ = 0;
    UniqueFd proc_fd_;  // /proc/self/fd, to reopen O_PATH descriptors
    std::set<std::pair<dev_t, ino_t>> hidden_;
    bool read_only_;
    bool world_readable_only_;
};

}  // namespace kvmsandbox::shares
