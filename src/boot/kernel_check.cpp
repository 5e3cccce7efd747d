#include "boot/kernel_check.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "base/file.h"

namespace kvmsandbox {

namespace {

constexpr size_t kMaxConfigSize = 4u << 20;  // a distribution .config is ~250 KiB
constexpr const char* kInstallGeneric = "apt-get install linux-image-amd64";

// What a missing driver means to the user, and its Kconfig symbol (to check a
// kernel that has no modules at all).
struct Need {
    const char* feature;
    const char* config;
};
const std::map<std::string, Need>& needs() {
    static const std::map<std::string, Need> m = {
        {"virtio_pci", {"virtio PCI support", "CONFIG_VIRTIO_PCI"}},
        {"virtio_console", {"virtio console support", "CONFIG_VIRTIO_CONSOLE"}},
        {"9pnet_virtio", {"9p over virtio support", "CONFIG_NET_9P_VIRTIO"}},
        {"9p", {"9p support", "CONFIG_9P_FS"}},
        {"virtio_net", {"virtio network support", "CONFIG_VIRTIO_NET"}},
        {"virtio_balloon", {"virtio balloon support", "CONFIG_VIRTIO_BALLOON"}},
        {"virtio_blk", {"virtio block device support", "CONFIG_VIRTIO_BLK"}},
        {"virtio_rng", {"virtio random number generator support", "CONFIG_HW_RANDOM_VIRTIO"}},
        {"ext4", {"ext4 support", "CONFIG_EXT4_FS"}},
        {"crc32c_generic", {"crc32c support", "CONFIG_CRYPTO_CRC32C"}},
    };
    return m;
}

bool is_dir(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The kernel's build configuration, "CONFIG_X" -> "y"/"m"/...; empty when
// there is none beside the image.
std::map<std::string, std::string> read_kernel_config(const std::string& kernel_path,
                                                      const std::string& release) {
    std::map<std::string, std::string> cfg;
    auto dir = std::filesystem::path(kernel_path).parent_path();
    auto data = read_file((dir / ("config-" + release)).string(), kMaxConfigSize);
    if (!data) return cfg;
    std::string_view text(reinterpret_cast<const char*>(data->data()), data->size());
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        size_t eq = line.find('=');
        if (line.starts_with("CONFIG_") && eq != std::string_view::npos)
            cfg.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
    }
    return cfg;
}

// The in-kernel decompressor (kernel/module/decompress.c) handles only the
// format the kernel was configured to compress its modules with.
std::vector<std::string> decompressible_suffixes(const std::map<std::string, std::string>& cfg) {
    auto on = [&](const char* k) {
        auto it = cfg.find(k);
        return it != cfg.end() && it->second == "y";
    };
    if (!on("CONFIG_MODULE_DECOMPRESS")) return {};
    if (on("CONFIG_MODULE_COMPRESS_GZIP")) return {".gz"};
    if (on("CONFIG_MODULE_COMPRESS_XZ")) return {".xz"};
    if (on("CONFIG_MODULE_COMPRESS_ZSTD")) return {".zst"};
    return {};
}

std::string feature_of(const std::string& module) {
    auto it = needs().find(canonical_module_name(module));
    return it != needs().end() ? it->second.feature : "module " + module;
}

}  // namespace

Result<KernelPlan> plan_kernel(const std::string& kernel_path, const std::string& modules_root,
                               const std::vector<std::string>& extra_modules) {
    auto release = release_of_kernel_image(kernel_path);
    if (!release)
        return failf("kernel {} cannot be used: {}", kernel_path, release.error().message);
    KernelPlan plan{kernel_path, *release, {}};

    std::vector<std::string> wanted = kSandboxKernelModules;
    for (const auto& m : extra_modules)
        if (std::find(wanted.begin(), wanted.end(), m) == wanted.end()) wanted.push_back(m);

    const auto cfg = read_kernel_config(kernel_path, *release);
    const std::string module_dir = modules_root + "/" + *release;
    if (!is_dir(module_dir)) {
        // A kernel built with every driver in (no modules at all) needs no
        // directory; only its config can tell.
        bool all_builtin = !cfg.empty();
        for (const auto& w : wanted) {
            auto n = needs().find(canonical_module_name(w));
            auto c = n == needs().end() ? cfg.end() : cfg.find(n->second.config);
            if (c == cfg.end() || c->second != "y") all_builtin = false;
        }
        if (all_builtin) return plan;
        return failf(
            "kernel {} ({}) has no modules: {} does not exist; install the matching modules "
            "(apt-get install linux-image-{}) or use the generic kernel ({})",
            kernel_path, *release, module_dir, *release, kInstallGeneric);
    }

    ModuleResolverOptions opts;
    opts.loadable_compressed_suffixes = decompressible_suffixes(cfg);
    auto resolver = ModuleResolver::open(module_dir, opts);
    if (!resolver)
        return failf(
            "kernel {} ({}): {}; reinstall its modules (apt-get install --reinstall "
            "linux-image-{})",
            kernel_path, *release, resolver.error().message, *release);

    auto missing = resolver->missing(wanted);
    if (!missing.empty()) {
        std::string what, detail;
        for (const auto& m : missing) {
            if (!what.empty()) {
                what += ", ";
                detail += ", ";
            }
            what += feature_of(m);
            detail += "module " + m;
        }
        return failf(
            "kernel {} ({}) has no {} ({} not found in {} and not built in); install the "
            "generic kernel: {}",
            kernel_path, *release, what, detail, module_dir, kInstallGeneric);
    }

    auto modules = resolver->resolve(wanted);
    if (!modules)
        return failf("kernel {} ({}): {}", kernel_path, *release, modules.error().message);
    plan.modules = std::move(*modules);
    return plan;
}

}  // namespace kvmsandbox
