#include "guest-init/ports.h"

#include <dirent.h>
#include <fcntl.h>
#include <time.h>

#include <cerrno>

#include "guest-init/io.h"

namespace kvmsandbox::guest_init {

std::map<std::string, std::string> discover_ports(const std::string& sysfs_root) {
    std::map<std::string, std::string> out;
    std::string dir = sysfs_root + "/class/virtio-ports";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return out;
    while (dirent* e = ::readdir(d)) {
        std::string dev = e->d_name;
        if (dev == "." || dev == "..") continue;
        std::string path = dir;
        path.append("/").append(dev).append("/name");
        auto name = read_file(path);
        if (!name) continue;
        while (!name->empty() && (name->back() == '\n' || name->back() == '\0')) name->pop_back();
        if (name->empty()) continue;
        out.emplace(std::move(*name), std::move(dev));
    }
    ::closedir(d);
    return out;
}

std::expected<std::vector<UniqueFd>, std::string> wait_and_open_ports(
    const std::vector<PortRequest>& reqs, const std::string& sysfs_root,
    const std::string& dev_root, int timeout_ms) {
    std::vector<UniqueFd> fds(reqs.size());
    long long deadline = monotonic_ms() + timeout_ms;
    for (;;) {
        auto found = discover_ports(sysfs_root);
        bool all = true;
        for (size_t i = 0; i < reqs.size(); ++i) {
            if (fds[i]) continue;
            auto it = found.find(reqs[i].name);
            if (it != found.end()) {
                std::string path = dev_root + "/" + it->second;
                fds[i].reset(::open(path.c_str(), reqs[i].open_flags | O_CLOEXEC | O_NOCTTY));
                // ENOENT: the node is not there yet; anything else is final.
                if (!fds[i] && errno != ENOENT)
                    return std::unexpected(errno_message("cannot open " + path, errno));
            }
            if (!fds[i]) all = false;
        }
        if (all) return fds;
        if (monotonic_ms() >= deadline) break;
        sleep_ms(10);
    }
    std::string missing;
    for (size_t i = 0; i < reqs.size(); ++i) {
        if (fds[i]) continue;
        if (!missing.empty()) missing += ", ";
        missing += reqs[i].name;
    }
    return std::unexpected("virtio-console ports not found: " + missing);
}

}  // namespace kvmsandbox::guest_init
