// What a sandbox start derives from the kernel alone: the modules guest-init
// must load and the initramfs holding guest-init, those modules and the root
// skeleton. Deriving it means parsing modules.dep and the kernel config
// (8 ms natively, bench/micro/setup_bench.cpp) and reading the modules, the
// same work on every start; so the result is kept in a file and reused while
// nothing it came from has changed. Each run's own config then travels in a
// second, small cpio archive appended to the cached one.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kvmsandbox {

struct BootImage {
    std::vector<std::string> module_files;  // file names in load order (GuestRunSpec::modules)
    std::vector<uint8_t> archive;           // cpio: /init, the modules, the root skeleton
};

class BootCache {
  public:
    // dir: where the files live (created 0700 when first needed); empty
    // means no cache: every get() builds.
    explicit BootCache(std::string dir) : dir_(std::move(dir)) {}
    // $XDG_CACHE_HOME/kvmsandbox/boot, else $HOME/.cache/kvmsandbox/boot;
    // empty when KVMSANDBOX_NO_CACHE=1 or neither variable is usable.
    static std::string default_dir();

    // The image stored under `key`, else build() stored under it. A missing,
    // unreadable, corrupt or mismatched file is rebuilt; failing to store is
    // not an error (the start just goes without a cache).
    Result<BootImage> get(const std::string& key, const std::function<Result<BootImage>()>& build);

    // The file used for `key` (for tests).
    std::string path_for(const std::string& key) const;

  private:
    std::string dir_;
};

// The key for a kernel: its release and the identity (path, size, mtime,
// inode) of everything the image is built from: the kernel image, its
// modules.dep and modules.builtin, its config, this kvmsandbox executable
// (which embeds guest-init), plus the extra modules asked for.
Result<std::string> boot_cache_key(const std::string& kernel_path,
                                   const std::vector<std::string>& extra_modules,
                                   const std::string& modules_root = "/lib/modules");

// plan_kernel + build_boot_archive(init_binary, ...), through the cache.
// init_binary must be this executable's own guest-init (the key names the
// executable, not the bytes).
Result<BootImage> prepare_boot_image(BootCache& cache, std::span<const uint8_t> init_binary,
                                     const std::string& kernel_path,
                                     const std::vector<std::string>& extra_modules,
                                     const std::string& modules_root = "/lib/modules");

}  // namespace kvmsandbox
