#include "boot/boot_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include <fmt/core.h>

#include "base/file.h"
#include "base/unique_fd.h"
#include "boot/cache_files.h"
#include "boot/initramfs.h"
#include "boot/kernel_check.h"
#include "boot/module_resolver.h"
#include "protocol/guest_protocol.h"

namespace kvmsandbox {

namespace {

constexpr std::string_view kMagic = "kvmsandbox-boot-cache-1";
// Far above any real image (guest-init and a dozen modules: ~2 MiB).
constexpr size_t kMaxCacheFile = 256u << 20;
constexpr size_t kKeepImages = 8;

std::string self_path() {
    std::error_code ec;
    auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("/proc/self/exe") : p.string();
}

std::string encode(const std::string& key, const BootImage& img) {
    std::string out;
    out.reserve(img.archive.size() + 4096);
    guest::append_record(out, "magic", kMagic);
    guest::append_record(out, "key", key);
    for (const auto& m : img.module_files) guest::append_record(out, "module", m);
    guest::append_record(
        out, "archive",
        std::string_view(reinterpret_cast<const char*>(img.archive.data()), img.archive.size()));
    return out;
}

// The image in `data` if it is a whole, well-formed file for exactly `key`.
std::optional<BootImage> decode(std::string_view data, const std::string& key) {
    auto recs = guest::parse_records(data);
    if (!recs || recs->size() < 3) return std::nullopt;
    const auto& r = *recs;
    if (r[0].key != "magic" || r[0].value != kMagic || r[1].key != "key" || r[1].value != key ||
        r.back().key != "archive" || r.back().value.empty())
        return std::nullopt;
    BootImage img;
    for (size_t i = 2; i + 1 < r.size(); ++i) {
        if (r[i].key != "module") return std::nullopt;
        img.module_files.push_back(r[i].value);
    }
    img.archive.assign(r.back().value.begin(), r.back().value.end());
    return img;
}

bool write_whole(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// Best effort: a temporary file renamed into place, so a reader never sees
// half a file and two starts racing both leave a whole one.
void store(const std::string& dir, const std::string& path, std::string_view data) {
    if (!make_private_dir(dir)) return;
    std::string tmp = path + ".XXXXXX";
    UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
    if (!fd) return;
    if (!write_whole(fd.get(), data) || ::rename(tmp.c_str(), path.c_str()) != 0) {
        ::unlink(tmp.c_str());
        return;
    }
    prune_cache(dir, ".img", kKeepImages);
}

}  // namespace

std::string BootCache::default_dir() {
    if (const char* off = std::getenv("KVMSANDBOX_NO_CACHE"); off && std::strcmp(off, "1") == 0)
        return {};
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x == '/')
        return std::string(x) + "/kvmsandbox/boot";
    if (const char* h = std::getenv("HOME"); h && *h == '/')
        return std::string(h) + "/.cache/kvmsandbox/boot";
    return {};
}

std::string BootCache::path_for(const std::string& key) const {
    return dir_.empty() ? std::string() : fmt::format("{}/{:016x}.img", dir_, fnv1a64(key));
}

Result<BootImage> BootCache::get(const std::string& key,
                                 const std::function<Result<BootImage>()>& build) {
    const std::string path = path_for(key);
    if (!path.empty()) {
        if (auto data = read_file(path, kMaxCacheFile)) {
            std::string_view text(reinterpret_cast<const char*>(data->data()), data->size());
            if (auto img = decode(text, key)) return std::move(*img);
        }
    }
    auto img = build();
    if (img && !path.empty()) store(dir_, path, encode(key, *img));
    return img;
}

Result<std::string> boot_cache_key(const std::string& kernel_path,
                                   const std::vector<std::string>& extra_modules,
                                   const std::string& modules_root) {
    KS_TRY_ASSIGN(auto release, release_of_kernel_image(kernel_path));
    const std::string mods = modules_root + "/" + release;
    const auto kdir = std::filesystem::path(kernel_path).parent_path().string();
    std::string key = "release " + release + "\n";
    key += file_identity(kernel_path);
    key += file_identity(mods + "/modules.dep");
    key += file_identity(mods + "/modules.builtin");
    key += file_identity(kdir + "/config-" + release);
    key += file_identity(self_path());
    for (const auto& m : extra_modules) key += "extra " + m + "\n";
    return key;
}

Result<BootImage> prepare_boot_image(BootCache& cache, std::span<const uint8_t> init_binary,
                                     const std::string& kernel_path,
                                     const std::vector<std::string>& extra_modules,
                                     const std::string& modules_root) {
    auto build = [&]() -> Result<BootImage> {
        KS_TRY_ASSIGN(auto plan, plan_kernel(kernel_path, modules_root, extra_modules));
        BootImage img;
        std::vector<InitramfsModule> modules;
        for (const auto& m : plan.modules) {
            img.module_files.push_back(m.file_name());
            modules.push_back({m.file_name(), m.absolute_path});
        }
        KS_TRY_ASSIGN(auto archive, build_boot_archive(init_binary, modules));
        img.archive = std::move(archive);
        return img;
    };
    auto key = boot_cache_key(kernel_path, extra_modules, modules_root);
    // An image we cannot even key (e.g. not a bzImage) gets plan_kernel's
    // own, more helpful, error.
    if (!key) return build();
    return cache.get(*key, build);
}

}  // namespace kvmsandbox
