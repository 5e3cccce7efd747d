// Decides whether a guest kernel can run the sandbox, and which of its
// modules the initramfs must carry. A kernel that cannot work is refused here,
// before any VM exists, with what it lacks and what to install.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "boot/module_resolver.h"

namespace kvmsandbox {

// What the sandbox needs from every guest kernel: the virtio PCI transport,
// the console ports for the streams, and 9p over virtio for the shares.
inline const std::vector<std::string> kSandboxKernelModules = {"virtio_pci", "virtio_console",
                                                               "9pnet_virtio", "9p"};

struct KernelPlan {
    std::string kernel_path;
    std::string release;
    std::vector<Module> modules;  // load order: dependencies first
};

// Reads the release from the image, finds modules_root/<release>, and
// resolves kSandboxKernelModules plus extra_modules (e.g. "virtio_net" for a
// networked run); each may be built in or a module.
//
// Compressed modules are accepted only when the kernel's config (found as
// config-<release> beside the image, Debian/Fedora's layout) says the kernel
// decompresses that format itself (CONFIG_MODULE_DECOMPRESS): guest-init then
// loads them with MODULE_INIT_COMPRESSED_FILE. Without that, they are refused.
//
// A kernel with no module directory at all is accepted only if that config
// shows every needed driver built in (=y).
Result<KernelPlan> plan_kernel(const std::string& kernel_path,
                               const std::string& modules_root = "/lib/modules",
                               const std::vector<std::string>& extra_modules = {});

}  // namespace kvmsandbox
