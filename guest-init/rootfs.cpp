#include "guest-init/rootfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "base/unique_fd.h"
#include "guest-init/io.h"

namespace kvmsandbox::guest_init {

std::string ninep_options(bool read_only) {
    return std::string("trans=virtio,version=9p2000.L,msize=512000,access=client,") +
           (read_only ? "cache=loose" : "cache=mmap");
}

std::string join_root(std::string_view root, std::string_view path) {
    std::string out(root);
    while (!out.empty() && out.back() == '/') out.pop_back();
    size_t i = 0;
    while (i < path.size() && path[i] == '/') ++i;
    out.push_back('/');
    out.append(path.substr(i));
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out;
}

bool path_within(std::string_view path, std::string_view dir) {
    while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
    while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
    if (dir == "/") return !path.empty() && path[0] == '/';
    if (!path.starts_with(dir)) return false;
    return path.size() == dir.size() || path[dir.size()] == '/';
}

bool home_is_shared(const GuestConfig& cfg) {
    for (const auto& m : cfg.mounts)
        if (path_within(cfg.home, m.path)) return true;
    return false;
}

std::vector<MountStep> build_mount_plan(const GuestConfig& cfg, std::string_view new_root) {
    using K = MountStep::Kind;
    std::vector<MountStep> plan;
    for (const char* p : {"/dev", "/proc", "/sys"})
        plan.push_back({K::Move, p, join_root(new_root, p), "", MS_MOVE, "", false});
    plan.push_back({K::Mount, "devpts", join_root(new_root, "/dev/pts"), "devpts",
                    MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", false});
    plan.push_back({K::Mount, "tmpfs", join_root(new_root, "/dev/shm"), "tmpfs",
                    MS_NOSUID | MS_NODEV, "mode=1777", false});
    plan.push_back({K::Mount, "tmpfs", join_root(new_root, "/tmp"), "tmpfs", MS_NOSUID | MS_NODEV,
                    "mode=1777", false});
    plan.push_back({K::Mount, "tmpfs", join_root(new_root, "/run"), "tmpfs", MS_NOSUID | MS_NODEV,
                    "mode=0755", false});
    for (const auto& m : cfg.mounts) {
        if (m.path == "/") continue;  // the root itself: mounted by build_root
        // nodev: device nodes on a host directory mean nothing in the guest.
        unsigned long flags = MS_NODEV | (m.read_only ? MS_RDONLY : 0);
        plan.push_back({K::Mount, m.tag, join_root(new_root, m.path), "9p", flags,
                        ninep_options(m.read_only), true});
    }
    return plan;
}

std::expected<void, std::string> mkdir_p(const std::string& path, mode_t mode) {
    if (path.empty()) return {};
    size_t pos = 0;
    for (;;) {
        size_t slash = path.find('/', pos + 1);
        std::string prefix = path.substr(0, slash);
        if (!prefix.empty() && prefix != "/") {
            if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
                int err = errno;
                // On a read-only share an existing directory may answer EROFS.
                struct stat st {};
                if (::stat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
                    return std::unexpected(errno_message("cannot create " + prefix, err));
            }
        }
        if (slash == std::string::npos) break;
        pos = slash;
    }
    return {};
}

namespace {

std::expected<void, std::string> copy_file(const std::string& src, const std::string& dst,
                                           mode_t mode) {
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return std::unexpected(errno_message("cannot open " + src, errno));
    UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777));
    if (!out) return std::unexpected(errno_message("cannot create " + dst, errno));
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(in.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::unexpected(errno_message("cannot read " + src, errno));
        if (n == 0) break;
        if (!write_all(out.get(), buf, static_cast<size_t>(n)))
            return std::unexpected(errno_message("cannot write " + dst, errno));
    }
    // The umask may have cut the mode at creation.
    if (::fchmod(out.get(), mode & 07777) != 0)
        return std::unexpected(errno_message("cannot chmod " + dst, errno));
    return {};
}

}  // namespace

std::expected<void, std::string> copy_tree(const std::string& src, const std::string& dst) {
    DIR* d = ::opendir(src.c_str());
    if (!d) return std::unexpected(errno_message("cannot open " + src, errno));
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(std::move(n));
    }
    ::closedir(d);
    for (const auto& n : names) {
        std::string s = src + "/", t = dst + "/";
        s += n;
        t += n;
        struct stat st {};
        if (::lstat(s.c_str(), &st) != 0)
            return std::unexpected(errno_message("cannot stat " + s, errno));
        if (S_ISDIR(st.st_mode)) {
            if (::mkdir(t.c_str(), st.st_mode & 07777) != 0 && errno != EEXIST)
                return std::unexpected(errno_message("cannot create " + t, errno));
            if (::chmod(t.c_str(), st.st_mode & 07777) != 0)
                return std::unexpected(errno_message("cannot chmod " + t, errno));
            auto r = copy_tree(s, t);
            if (!r) return r;
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t len = ::readlink(s.c_str(), target, sizeof target - 1);
            if (len < 0) return std::unexpected(errno_message("cannot read link " + s, errno));
            target[len] = '\0';
            ::unlink(t.c_str());
            if (::symlink(target, t.c_str()) != 0)
                return std::unexpected(errno_message("cannot create symlink " + t, errno));
        } else if (S_ISREG(st.st_mode)) {
            auto r = copy_file(s, t, st.st_mode);
            if (!r) return r;
        }
        // Anything else (device nodes, fifos) has no business in the skeleton.
    }
    return {};
}

std::expected<void, std::string> apply_mount_step(const MountStep& step, int enoent_timeout_ms) {
    auto dir = mkdir_p(step.target, 0755);
    if (!dir) return dir;
    if (step.kind == MountStep::Kind::Move) {
        if (::mount(step.source.c_str(), step.target.c_str(), nullptr, MS_MOVE, nullptr) != 0)
            return std::unexpected(
                errno_message("cannot move " + step.source + " to " + step.target, errno));
        return {};
    }
    int waited = 0;
    for (;;) {
        if (::mount(step.source.c_str(), step.target.c_str(), step.fstype.c_str(), step.flags,
                    step.data.c_str()) == 0)
            return {};
        int err = errno;
        if (err == ENOENT && step.retry_enoent && waited < enoent_timeout_ms) {
            sleep_ms(10);
            waited += 10;
            continue;
        }
        return std::unexpected(errno_message(
            "cannot mount " + step.fstype + " " + step.source + " on " + step.target, err));
    }
}

}  // namespace kvmsandbox::guest_init
