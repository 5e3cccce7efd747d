#include "boot/kernel_locator.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <vector>

namespace kvmsandbox {

namespace {

// Version order ("6.1.0-9" < "6.1.0-10"): compare digit runs as numbers.
bool version_less(const std::string& a, const std::string& b) {
    size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (std::isdigit(static_cast<unsigned char>(a[i])) &&
            std::isdigit(static_cast<unsigned char>(b[j]))) {
            size_t i2 = i, j2 = j;
            while (i2 < a.size() && std::isdigit(static_cast<unsigned char>(a[i2]))) ++i2;
            while (j2 < b.size() && std::isdigit(static_cast<unsigned char>(b[j2]))) ++j2;
            std::string na = a.substr(i, i2 - i), nb = b.substr(j, j2 - j);
            na.erase(0, std::min(na.find_first_not_of('0'), na.size()));
            nb.erase(0, std::min(nb.find_first_not_of('0'), nb.size()));
            if (na.size() != nb.size()) return na.size() < nb.size();
            if (na != nb) return na < nb;
            i = i2;
            j = j2;
        } else {
            if (a[i] != b[j]) return a[i] < b[j];
            ++i;
            ++j;
        }
    }
    return a.size() - i < b.size() - j;
}

bool is_file(const std::filesystem::path& p) {
    std::error_code ec;
    return std::filesystem::is_regular_file(p, ec);
}

}  // namespace

KernelSearch host_kernel_search() {
    KernelSearch s;
    utsname u{};
    if (::uname(&u) == 0) s.host_release = u.release;
    if (const char* e = std::getenv("KVMSANDBOX_KERNEL")) s.env_kernel = e;
    return s;
}

Result<std::string> find_default_kernel(const KernelSearch& search) {
    if (!search.env_kernel.empty()) {
        if (!is_file(search.env_kernel))
            return failf("KVMSANDBOX_KERNEL={} is not a file", search.env_kernel);
        return search.env_kernel;
    }
    namespace fs = std::filesystem;
    const fs::path boot(search.boot_dir);
    if (!search.host_release.empty()) {
        auto own = boot / ("vmlinuz-" + search.host_release);
        if (is_file(own)) return own.string();
    }
    std::vector<std::string> versions;
    std::error_code ec;
    for (const auto& ent : fs::directory_iterator(boot, ec)) {
        auto name = ent.path().filename().string();
        if (name.rfind("vmlinuz-", 0) == 0 && is_file(ent.path()))
            versions.push_back(name.substr(8));
    }
    if (versions.empty())
        return failf(
            "no guest kernel found in {} (tried vmlinuz-{} and vmlinuz-*); install one "
            "(Debian: apt-get install linux-image-amd64) or pass --kernel",
            search.boot_dir, search.host_release.empty() ? "<release>" : search.host_release);
    std::sort(versions.begin(), versions.end(), version_less);
    return (boot / ("vmlinuz-" + versions.back())).string();
}

}  // namespace kvmsandbox
