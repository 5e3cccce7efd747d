#include "sandbox/rootfs_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/unique_fd.h"
#include "boot/root_skeleton.h"
#include "control/instance_dir.h"

namespace kvmsandbox {

namespace {

Result<void> mkdir_mode(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
        return fail_errno("cannot create " + path);
    // mkdir's mode is filtered by the umask; the skeleton's modes are exact.
    if (::chmod(path.c_str(), mode) != 0) return fail_errno("cannot set the mode of " + path);
    return {};
}
}  // namespace

Result<std::string> rootfs_store_dir() {
    if (const char* d = std::getenv("KVMSANDBOX_ROOTFS_DIR"); d && *d) return std::string(d);
    const char* home = std::getenv("HOME");
    if (!home || *home != '/')
        return fail(
            "cannot find the rootfs directory: HOME is not set (set KVMSANDBOX_ROOTFS_DIR)");
    return std::string(home) + "/.kvmsandbox/rootfs";
}

Result<std::string> create_rootfs(const std::string& name) {
    if (auto v = control::validate_instance_name(name); !v)
        return fail("setup: " + v.error().message);
    auto store = rootfs_store_dir();
    if (!store) return store;
    std::error_code ec;
    std::filesystem::create_directories(*store, ec);
    if (ec) return fail("cannot create " + *store + ": " + ec.message());
    const std::string dir = *store + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0) {
        if (errno == EEXIST) return fail("a rootfs named " + name + " already exists: " + dir);
        return fail_errno("cannot create " + dir);
    }
    for (const auto& d : root_skeleton_dirs()) KS_TRY(mkdir_mode(dir + "/" + d.path, d.mode));
    return dir;
}

Result<std::string> find_rootfs(const std::string& name) {
    if (auto v = control::validate_instance_name(name); !v)
        return fail("--rootfs: " + v.error().message);
    auto store = rootfs_store_dir();
    if (!store) return store;
    const std::string dir = *store + "/" + name;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return fail("no rootfs named " + name + " (create it with 'kvmsandbox setup " + name +
                    "')");
    return dir;
}

}  // namespace kvmsandbox
