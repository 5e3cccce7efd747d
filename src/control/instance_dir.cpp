#include "control/instance_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <random>

namespace kvmsandbox::control {

namespace {

constexpr std::string_view kSockSuffix = ".sock";
constexpr std::string_view kLockSuffix = ".lock";

enum class SocketState { Live, Dead, Absent, NotSocket };

// Whether something listens on the socket at `path`. Only a refused
// connection counts as dead: a full backlog (EAGAIN) or a permission problem
// says nothing about the owner, so those count as live and are left alone.
SocketState probe_socket(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return SocketState::Absent;
    if (!S_ISSOCK(st.st_mode)) return SocketState::NotSocket;
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) return SocketState::Live;
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, path.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return SocketState::Live;
    int r;
    do {
        r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    } while (r != 0 && errno == EINTR);
    if (r == 0) return SocketState::Live;
    if (errno == ECONNREFUSED) return SocketState::Dead;
    if (errno == ENOENT) return SocketState::Absent;
    return SocketState::Live;
}

// Takes `path` with flock(LOCK_EX | LOCK_NB). Returns an invalid fd when
// another process holds it.
Result<UniqueFd> try_lock(const std::string& path) {
    // A holder unlinks the file before it unlocks it; if that happened between
    // our open() and flock(), we hold a lock on an orphan inode and must retry
    // on the new file. A few rounds settle any realistic race.
    for (int attempt = 0; attempt < 8; ++attempt) {
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd) return fail_errno(fmt::format("cannot open {}", path));
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK) return UniqueFd();
            return fail_errno(fmt::format("cannot lock {}", path));
        }
        struct stat held {
        }, now{};
        if (::fstat(fd.get(), &held) != 0) return fail_errno(fmt::format("cannot stat {}", path));
        if (::stat(path.c_str(), &now) == 0 && now.st_dev == held.st_dev &&
            now.st_ino == held.st_ino)
            return fd;
    }
    return failf("cannot lock {}: it keeps being replaced", path);
}

void unlock_and_remove(const std::string& path, UniqueFd& fd) {
    if (!fd) return;
    // Unlink first, while still holding the lock (see try_lock).
    ::unlink(path.c_str());
    fd.reset();
}

// XDG_RUNTIME_DIR is only worth using when it is what the spec promises: an
// absolute path to an existing directory of ours. Otherwise fall back to HOME
// rather than fail.
bool usable_runtime_dir(const char* x) {
    if (!x || x[0] != '/') return false;
    struct stat st {};
    return ::stat(x, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid() &&
           ::access(x, W_OK | X_OK) == 0;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

Result<void> ensure_private_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        return fail_errno(fmt::format("cannot create instance directory {}", path));
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fail_errno(fmt::format("cannot open instance directory {}", path));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return fail_errno(fmt::format("cannot stat instance directory {}", path));
    if (st.st_uid != ::geteuid())
        return failf("instance directory {} is owned by uid {}, not by you (uid {}); refusing it",
                     path, st.st_uid, ::geteuid());
    if ((st.st_mode & 022) != 0)
        return failf(
            "instance directory {} is group- or world-writable (mode {:04o}); refusing it "
            "(fix with: chmod 700 {})",
            path, st.st_mode & 07777, path);
    return {};
}

Result<std::string> instance_dir() {
    std::string dir;
    if (const char* o = std::getenv("KVMSANDBOX_INSTANCE_DIR"); o && *o) {
        dir = o;
    } else if (const char* x = std::getenv("XDG_RUNTIME_DIR"); usable_runtime_dir(x)) {
        dir = std::string(x) + "/kvmsandbox";
    } else if (const char* h = std::getenv("HOME"); h && h[0] == '/') {
        dir = std::string(h) + "/.kvmsandbox";
    } else {
        return fail(
            "cannot place the instance directory: neither XDG_RUNTIME_DIR nor HOME is usable "
            "(set KVMSANDBOX_INSTANCE_DIR)");
    }
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    KS_TRY(ensure_private_dir(dir));
    return dir;
}

Result<void> validate_instance_name(std::string_view name) {
    if (name.empty()) return fail("instance name must not be empty");
    if (name.size() > kMaxInstanceName)
        return failf("instance name is too long ({} characters, at most {})", name.size(),
                     kMaxInstanceName);
    if (name.front() == '.' || name.front() == '-')
        return failf("invalid instance name '{}': must not start with '{}'", name, name.front());
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        // The name is not echoed: it may hold terminal escapes or newlines.
        if (!ok)
            return fail(
                "invalid instance name: only letters, digits, '.', '_' and '-' are allowed");
    }
    return {};
}

std::string random_instance_name() {
    std::random_device rd;
    return fmt::format("vm-{:06x}", rd() & 0xFFFFFF);
}

Result<std::string> instance_socket_path(const std::string& dir, std::string_view name) {
    KS_TRY(validate_instance_name(name));
    std::string path = fmt::format("{}/{}{}", dir, name, kSockSuffix);
    constexpr size_t kMax = sizeof(sockaddr_un{}.sun_path) - 1;
    if (path.size() > kMax)
        return failf(
            "socket path {} is too long for a unix socket ({} bytes, at most {}); use a shorter "
            "instance name or set KVMSANDBOX_INSTANCE_DIR to a shorter directory",
            path, path.size(), kMax);
    return path;
}

Result<std::vector<std::string>> list_instances(const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return fail_errno(fmt::format("cannot read instance directory {}", dir));
    std::vector<std::string> socks, locks;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
        std::string_view file = e->d_name;
        if (ends_with(file, kSockSuffix))
            socks.emplace_back(file.substr(0, file.size() - kSockSuffix.size()));
        else if (ends_with(file, kLockSuffix))
            locks.emplace_back(file.substr(0, file.size() - kLockSuffix.size()));
        errno = 0;
    }
    int read_errno = errno;
    ::closedir(d);
    if (read_errno != 0) {
        errno = read_errno;
        return fail_errno(fmt::format("cannot read instance directory {}", dir));
    }

    std::vector<std::string> live;
    for (const auto& name : socks) {
        // Files we did not name are none of our business; leave them.
        if (!validate_instance_name(name)) continue;
        std::string sock = fmt::format("{}/{}{}", dir, name, kSockSuffix);
        SocketState state = probe_socket(sock);
        if (state == SocketState::Live) {
            live.push_back(name);
            continue;
        }
        if (state != SocketState::Dead) continue;
        std::string lock_path = fmt::format("{}/{}{}", dir, name, kLockSuffix);
        KS_TRY_ASSIGN(auto lock, try_lock(lock_path));
        if (!lock) {
            // Its owner is alive and between bind() and listen(): report it.
            live.push_back(name);
            continue;
        }
        ::unlink(sock.c_str());
        unlock_and_remove(lock_path, lock);
    }
    // Lock files of instances that died before creating their socket.
    for (const auto& name : locks) {
        if (!validate_instance_name(name)) continue;
        if (std::find(socks.begin(), socks.end(), name) != socks.end()) continue;
        std::string lock_path = fmt::format("{}/{}{}", dir, name, kLockSuffix);
        auto lock = try_lock(lock_path);
        if (lock && *lock) unlock_and_remove(lock_path, *lock);
    }
    std::sort(live.begin(), live.end());
    return live;
}

InstanceClaim& InstanceClaim::operator=(InstanceClaim&& o) noexcept {
    if (this != &o) {
        release();
        name_ = std::move(o.name_);
        socket_path_ = std::move(o.socket_path_);
        lock_path_ = std::move(o.lock_path_);
        lock_ = std::move(o.lock_);
    }
    return *this;
}

InstanceClaim::~InstanceClaim() {
    release();
}

void InstanceClaim::release() {
    unlock_and_remove(lock_path_, lock_);
}

// `busy` separates "the name is taken" from failures of the machinery, so
// claim_unique_instance knows when to retry.
Result<InstanceClaim> claim_instance_impl(const std::string& dir, std::string_view name,
                                          bool& busy) {
    KS_TRY_ASSIGN(auto sock, instance_socket_path(dir, name));
    std::string lock_path = fmt::format("{}/{}{}", dir, name, kLockSuffix);
    KS_TRY_ASSIGN(auto lock, try_lock(lock_path));
    if (!lock) {
        busy = true;
        return failf("an instance named {} is already running", name);
    }
    switch (probe_socket(sock)) {
        case SocketState::Live:
            // A live socket without the lock: an instance that does not follow
            // the lock protocol (or lost its lock file). Never steal its name.
            unlock_and_remove(lock_path, lock);
            busy = true;
            return failf("an instance named {} is already running", name);
        case SocketState::NotSocket:
            unlock_and_remove(lock_path, lock);
            return failf("cannot use {}: it exists and is not a socket", sock);
        case SocketState::Dead:
            if (::unlink(sock.c_str()) != 0 && errno != ENOENT) {
                auto err = fail_errno(fmt::format("cannot remove stale socket {}", sock));
                unlock_and_remove(lock_path, lock);
                return err;
            }
            break;
        case SocketState::Absent:
            break;
    }
    return InstanceClaim(std::string(name), std::move(sock), std::move(lock_path), std::move(lock));
}

Result<InstanceClaim> claim_instance(const std::string& dir, std::string_view name) {
    bool busy = false;
    return claim_instance_impl(dir, name, busy);
}

Result<InstanceClaim> claim_unique_instance(const std::string& dir) {
    constexpr int kAttempts = 16;
    for (int i = 0; i < kAttempts; ++i) {
        std::string name = random_instance_name();
        bool busy = false;
        auto claim = claim_instance_impl(dir, name, busy);
        if (claim || !busy) return claim;
    }
    return failf("could not find a free instance name in {} after {} attempts", dir, kAttempts);
}

}  // namespace kvmsandbox::control
