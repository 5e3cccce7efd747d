// The confinement core's rules; see confined_root.h for what they guarantee.
#include "shares/confined_root.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "base/result.h"

namespace kvmsandbox::shares {

namespace {

// Every resolution from a guest name: stay beneath the starting directory and
// never follow a symlink of any kind (the guest resolves its own symlinks).
constexpr uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
constexpr size_t kMaxDepth = 4096;  // ".." ancestry check bound

// A failed call whose errno might (in theory) be 0 still fails.
std::unexpected<int> errno_fail() {
    return std::unexpected(errno ? errno : EIO);
}

}  // namespace

ErrnoResult<struct stat> stat_fd(int fd) {
    struct stat st {};
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return std::unexpected(errno);
    return st;
}

ErrnoResult<struct stat> stat_at(int dir, const std::string& name) {
    struct stat st {};
    if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return std::unexpected(errno);
    return st;
}

std::string fd_path(int fd) {
    return "/proc/self/fd/" + std::to_string(fd);
}

ErrnoResult<void> check_name(std::string_view name) {
    if (name.empty() || name == "." || name == "..") return std::unexpected(EINVAL);
    if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
        return std::unexpected(EINVAL);
    return {};
}

ErrnoResult<void> check_symlink_target(std::string_view target) {
    if (target.empty() || target.find('\0') != std::string_view::npos)
        return std::unexpected(EINVAL);
    return {};
}

mode_t sanitize_mode(uint32_t mode, bool is_dir) {
    mode_t m = mode & 07777;
    m &= ~S_ISUID;
    if (!is_dir) m &= ~S_ISGID;
    return m;
}

ErrnoResult<mode_t> node_type(uint32_t mode) {
    mode_t type = mode & S_IFMT;
    if (type == S_IFCHR || type == S_IFBLK) return std::unexpected(EPERM);  // no devices, ever
    if (type == 0) type = S_IFREG;
    if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK) return std::unexpected(EINVAL);
    return type;
}

ConfinedRoot::ConfinedRoot(UniqueFd root_dir, bool read_only,
                           const std::vector<std::string>& hidden, bool world_readable_only)
    : read_only_(read_only), world_readable_only_(world_readable_only) {
    if (root_dir) {
        if (auto st = stat_fd(root_dir.get()); st && S_ISDIR(st->st_mode)) {
            root_dev_ = st->st_dev;
            root_ino_ = st->st_ino;
            root_ = std::make_shared<const UniqueFd>(std::move(root_dir));
        }
    }
    if (root_) {
        for (const auto& rel : hidden) {
            auto fd = open_beneath(root_->get(), rel.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
            if (!fd) continue;  // absent on this host: nothing to hide
            if (auto st = stat_fd(fd->get())) hidden_.insert({st->st_dev, st->st_ino});
        }
    }
    UniqueFd pfd(open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (pfd) {
        // Reopening through /proc/self/fd is only sound if that is procfs.
        struct statfs sfs {};
        if (fstatfs(pfd.get(), &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC)
            proc_fd_ = std::move(pfd);
    }
}

ErrnoResult<void> ConfinedRoot::check_writable() const {
    if (read_only_) return std::unexpected(EROFS);
    return {};
}

ErrnoResult<void> ConfinedRoot::check_open_flags(int host_flags) const {
    if (read_only_ && ((host_flags & O_ACCMODE) != O_RDONLY || (host_flags & O_TRUNC)))
        return std::unexpected(EROFS);
    return {};
}

ErrnoResult<void> ConfinedRoot::check_visible(const struct stat& st) const {
    if (is_hidden(st.st_dev, st.st_ino)) return std::unexpected(ENOENT);
    return {};
}

ErrnoResult<void> ConfinedRoot::check_step(const struct stat& dir, const struct stat& entry) const {
    KS_TRY(check_visible(entry));
    if (!world_readable_only_) return {};
    // Mode bits as an unprivileged user meets them: others' bits only, never
    // ours (we may well be root, or the owner of a root-only file's group).
    if (!(dir.st_mode & S_IXOTH)) return std::unexpected(ENOENT);
    if (!S_ISLNK(entry.st_mode) && !(entry.st_mode & S_IROTH)) return std::unexpected(ENOENT);
    return {};
}

ErrnoResult<void> ConfinedRoot::check_parent(const struct stat& parent) const {
    if (is_root(parent)) return {};
    KS_TRY(check_visible(parent));
    if (world_readable_only_ && (parent.st_mode & (S_IROTH | S_IXOTH)) != (S_IROTH | S_IXOTH))
        return std::unexpected(ENOENT);
    return {};
}

bool ConfinedRoot::listed(int dir_fd, const struct stat& dir, const char* name,
                          unsigned char d_type, ino_t d_ino) const {
    if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) return true;
    if (is_hidden(dir.st_dev, d_ino)) return false;
    if (!world_readable_only_) return true;
    if (!(dir.st_mode & S_IXOTH)) return false;  // nothing inside can be reached
    if (d_type == DT_LNK) return true;           // links need no stat: always shown
    struct stat st {};
    // Gone meanwhile, or not ours to see: left out.
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return false;
    return check_step(dir, st).has_value();
}

ErrnoResult<bool> ConfinedRoot::is_root(int fd) const {
    KS_TRY_ASSIGN(auto st, stat_fd(fd));
    return is_root(st);
}

ErrnoResult<UniqueFd> ConfinedRoot::open_beneath(int dir_fd, const char* name, uint64_t flags,
                                                 uint64_t mode) {
    open_how how{};
    how.flags = flags;
    how.mode = mode;
    how.resolve = kResolve;
    long fd;
    do {
        fd = syscall(SYS_openat2, dir_fd, name, &how, sizeof how);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return std::unexpected(errno);
    return UniqueFd(static_cast<int>(fd));
}

ErrnoResult<UniqueFd> ConfinedRoot::lookup(int dir_fd, std::string_view name) {
    KS_TRY(check_name(name));
    const std::string s(name);
    return open_beneath(dir_fd, s.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
}

// RESOLVE_BENEATH forbids ".." by construction, so this opens the parent
// plainly and then proves it is still beneath the root by climbing to it.
ErrnoResult<UniqueFd> ConfinedRoot::parent_of(int dir_fd) const {
    if (!root_) return std::unexpected(EBADF);
    int fd = openat(dir_fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return std::unexpected(errno);
    UniqueFd result(fd);
    UniqueFd cur;
    int probe = result.get();
    for (size_t depth = 0; depth < kMaxDepth; ++depth) {
        KS_TRY_ASSIGN(const struct stat st, stat_fd(probe));
        if (is_root(st)) return result;
        UniqueFd up(openat(probe, "..", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!up) return std::unexpected(errno);
        KS_TRY_ASSIGN(const struct stat ust, stat_fd(up.get()));
        // Our own parent: the host's "/", so the directory left the share.
        if (ust.st_dev == st.st_dev && ust.st_ino == st.st_ino) return std::unexpected(EXDEV);
        cur = std::move(up);
        probe = cur.get();
    }
    return std::unexpected(ELOOP);
}

ErrnoResult<UniqueFd> ConfinedRoot::reopen(int path_fd, int flags) const {
    if (!proc_fd_) return std::unexpected(EOPNOTSUPP);
    KS_TRY_ASSIGN(const struct stat st, stat_fd(path_fd));
    if (S_ISLNK(st.st_mode)) return std::unexpected(ELOOP);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return std::unexpected(ENXIO);
    if (S_ISDIR(st.st_mode) && (flags & O_ACCMODE) != O_RDONLY) return std::unexpected(EISDIR);
    const std::string n = std::to_string(path_fd);
    int fd;
    do {
        fd = openat(proc_fd_.get(), n.c_str(), (flags | O_CLOEXEC | O_NOCTTY) & ~O_CREAT);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return std::unexpected(errno);
    return UniqueFd(fd);
}

ErrnoResult<UniqueFd> ConfinedRoot::path_of(int open_fd) const {
    int fd = openat(proc_fd_.get(), std::to_string(open_fd).c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) return errno_fail();
    return UniqueFd(fd);
}

// Our umask must not change the mode the guest asked for (the guest already
// applied its own umask). Only a non-symlink found beneath dir_fd is touched.
ErrnoResult<void> ConfinedRoot::fix_mode(int dir_fd, const std::string& name, mode_t mode) const {
    KS_TRY_ASSIGN(UniqueFd fd,
                  open_beneath(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0));
    KS_TRY_ASSIGN(const struct stat st, stat_fd(fd.get()));
    if (S_ISLNK(st.st_mode) || (st.st_mode & 07777) == mode) return {};
    if (fchmodat(AT_FDCWD, fd_path(fd.get()).c_str(), mode, 0) < 0) return errno_fail();
    return {};
}

ErrnoResult<ConfinedRoot::Created> ConfinedRoot::create_file(int dir_fd, const std::string& name,
                                                             int host_flags, uint32_t mode,
                                                             bool excl) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(name));
    if (host_flags & (O_DIRECTORY | O_CREAT)) return std::unexpected(EINVAL);
    const mode_t m = sanitize_mode(mode, false);
    // O_NOFOLLOW: never create or open through a symlink; O_NONBLOCK: an
    // existing fifo must not hang the worker (cleared again below).
    const uint64_t base = static_cast<uint64_t>(host_flags) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    bool created = true;
    auto opened = open_beneath(dir_fd, name.c_str(), base | O_CREAT | O_EXCL, m);
    if (!opened && opened.error() == EEXIST && !excl) {
        created = false;
        opened = open_beneath(dir_fd, name.c_str(), base, 0);
    }
    if (!opened) return std::unexpected(opened.error());
    KS_TRY_ASSIGN(struct stat st, stat_fd(opened->get()));
    if (!S_ISREG(st.st_mode)) return std::unexpected(created ? EIO : ENXIO);
    if (!(host_flags & O_NONBLOCK)) fcntl(opened->get(), F_SETFL, host_flags & ~O_NONBLOCK);
    if (created && (st.st_mode & 07777) != m) {
        if (fchmod(opened->get(), m) == 0) st.st_mode = (st.st_mode & ~07777) | m;
    }
    KS_TRY_ASSIGN(UniqueFd path, path_of(opened->get()));
    return Created{std::move(*opened), std::move(path), st};
}

ErrnoResult<struct stat> ConfinedRoot::make_dir(int dir_fd, const std::string& name,
                                                uint32_t mode) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(name));
    const mode_t m = sanitize_mode(mode, true);
    if (mkdirat(dir_fd, name.c_str(), m) < 0) return errno_fail();
    (void)fix_mode(dir_fd, name, m);  // best effort: the directory exists
    return stat_at(dir_fd, name);
}

ErrnoResult<struct stat> ConfinedRoot::make_node(int dir_fd, const std::string& name,
                                                 uint32_t mode) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(name));
    KS_TRY_ASSIGN(const mode_t type, node_type(mode));
    const mode_t m = sanitize_mode(mode, false);
    if (mknodat(dir_fd, name.c_str(), type | m, 0) < 0) return errno_fail();
    (void)fix_mode(dir_fd, name, m);
    return stat_at(dir_fd, name);
}

ErrnoResult<struct stat> ConfinedRoot::make_symlink(int dir_fd, const std::string& name,
                                                    const std::string& target) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(name));
    KS_TRY(check_symlink_target(target));
    if (symlinkat(target.c_str(), dir_fd, name.c_str()) < 0) return errno_fail();
    return stat_at(dir_fd, name);
}

ErrnoResult<void> ConfinedRoot::link(int path_fd, int dir_fd, const std::string& name) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(name));
    KS_TRY_ASSIGN(const struct stat st, stat_fd(path_fd));
    if (S_ISDIR(st.st_mode)) return std::unexpected(EPERM);
    // linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; following the
    // /proc magic link of our O_PATH fd links exactly that inode without it.
    if (linkat(AT_FDCWD, fd_path(path_fd).c_str(), dir_fd, name.c_str(), AT_SYMLINK_FOLLOW) < 0)
        return errno_fail();
    return {};
}

ErrnoResult<void> ConfinedRoot::rename(int old_dir, const std::string& old_name, int new_dir,
                                       const std::string& new_name) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(old_name));
    KS_TRY(check_name(new_name));
    if (renameat(old_dir, old_name.c_str(), new_dir, new_name.c_str()) < 0) return errno_fail();
    return {};
}

ErrnoResult<void> ConfinedRoot::unlink(int dir_fd, const std::string& name, bool is_dir) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(name));
    if (unlinkat(dir_fd, name.c_str(), is_dir ? AT_REMOVEDIR : 0) < 0) return errno_fail();
    return {};
}

ErrnoResult<void> ConfinedRoot::same_entry(int path_fd, int parent_fd, const std::string& name,
                                           struct stat* st) const {
    KS_TRY(check_name(name));
    KS_TRY_ASSIGN(*st, stat_fd(path_fd));
    KS_TRY_ASSIGN(const struct stat cur, stat_at(parent_fd, name));
    if (cur.st_dev != st->st_dev || cur.st_ino != st->st_ino) return std::unexpected(ENOENT);
    return {};
}

ErrnoResult<void> ConfinedRoot::rename_entry(int path_fd, int parent_fd, const std::string& name,
                                             int new_dir, const std::string& new_name) const {
    KS_TRY(check_writable());
    KS_TRY(check_name(new_name));
    struct stat st {};
    KS_TRY(same_entry(path_fd, parent_fd, name, &st));
    if (renameat(parent_fd, name.c_str(), new_dir, new_name.c_str()) < 0) return errno_fail();
    return {};
}

ErrnoResult<void> ConfinedRoot::remove_entry(int path_fd, int parent_fd,
                                             const std::string& name) const {
    KS_TRY(check_writable());
    struct stat st {};
    KS_TRY(same_entry(path_fd, parent_fd, name, &st));
    if (unlinkat(parent_fd, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
        return errno_fail();
    return {};
}

ErrnoResult<void> ConfinedRoot::chmod(int path_fd, const struct stat& st, uint32_t mode) const {
    KS_TRY(check_writable());
    if (S_ISLNK(st.st_mode)) return std::unexpected(EOPNOTSUPP);
    const mode_t m = sanitize_mode(mode, S_ISDIR(st.st_mode));
    if (fchmodat(AT_FDCWD, fd_path(path_fd).c_str(), m, 0) < 0) return errno_fail();
    return {};
}

}  // namespace kvmsandbox::shares
