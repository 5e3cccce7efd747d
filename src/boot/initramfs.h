// The sandbox's initramfs, built in memory for each run: guest-init as /init,
// the kernel modules it loads, the root skeleton, and the run's config.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kvmsandbox {

struct InitramfsModule {
    std::string file_name;  // name inside guest::kModuleDir
    std::string host_path;  // where to read it from
};

// Returns a newc cpio archive (uncompressed: the kernel unpacks it fastest
// that way). It is build_boot_archive followed by build_config_archive: the
// kernel unpacks concatenated archives in order.
Result<std::vector<uint8_t>> build_sandbox_initramfs(std::span<const uint8_t> init_binary,
                                                     const std::vector<InitramfsModule>& modules,
                                                     const std::string& config);

// The part that is the same on every start with this kernel: /init, the
// modules, the root skeleton (BootCache keeps it).
Result<std::vector<uint8_t>> build_boot_archive(std::span<const uint8_t> init_binary,
                                                const std::vector<InitramfsModule>& modules);
// The run's own part: the config file.
Result<std::vector<uint8_t>> build_config_archive(const std::string& config);

}  // namespace kvmsandbox
