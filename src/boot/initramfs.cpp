#include "boot/initramfs.h"

#include <filesystem>

#include "boot/cpio_writer.h"
#include "boot/root_skeleton.h"
#include "protocol/guest_protocol.h"

namespace kvmsandbox {

Result<std::vector<uint8_t>> build_boot_archive(std::span<const uint8_t> init_binary,
                                                const std::vector<InitramfsModule>& modules) {
    if (init_binary.empty()) return fail("the guest init binary is missing from this build");
    CpioWriter w;
    KS_TRY(w.add_file("init", 0755, init_binary));
    const std::string module_dir = std::string(guest::kModuleDir).substr(1);
    KS_TRY(w.add_directory(module_dir, 0755));
    for (const auto& m : modules) {
        auto r = w.add_file_from_disk(module_dir + "/" + m.file_name, m.host_path, 0644);
        if (!r) return failf("kernel module {}: {}", m.host_path, r.error().message);
    }
    // The root skeleton: mount points and the usual writable places; the
    // rest comes from the shares.
    const std::string root = std::string(guest::kRootfsDir).substr(1);
    for (const auto& d : root_skeleton_dirs()) KS_TRY(w.add_directory(root + "/" + d.path, d.mode));
    return w.finish();
}

Result<std::vector<uint8_t>> build_config_archive(const std::string& config) {
    CpioWriter w;
    KS_TRY(w.add_file(std::string(guest::kConfigPath).substr(1), 0600, config));
    return w.finish();
}

Result<std::vector<uint8_t>> build_sandbox_initramfs(std::span<const uint8_t> init_binary,
                                                     const std::vector<InitramfsModule>& modules,
                                                     const std::string& config) {
    auto boot = build_boot_archive(init_binary, modules);
    if (!boot) return boot;
    auto cfg = build_config_archive(config);
    if (!cfg) return cfg;
    append_cpio_archive(*boot, *cfg);
    return boot;
}

}  // namespace kvmsandbox
