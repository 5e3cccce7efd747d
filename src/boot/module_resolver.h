// Which kernel module files the guest must load, and in what order, for a
// set of wanted drivers: the transitive closure over the kernel's
// modules.dep, dependencies first, minus what modules.builtin says is built
// into the image.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kvmsandbox {

struct Module {
    std::string name;           // canonical: '_' for '-', no suffix ("9pnet_virtio")
    std::string relative_path;  // as in modules.dep ("kernel/net/9p/9pnet_virtio.ko")
    std::string absolute_path;  // module_dir/relative_path

    // The file's own name ("9pnet_virtio.ko"); guest-init tells compressed
    // modules by this suffix.
    std::string file_name() const;
    bool compressed() const;
};

// Module names compare with '-' and '_' equivalent (the kernel's own
// KBUILD_MODNAME rule): "virtio-pci", "virtio_pci" and
// "kernel/drivers/virtio/virtio_pci.ko.xz" all give "virtio_pci".
std::string canonical_module_name(std::string_view name_or_path);

struct ModuleResolverOptions {
    // Compressed module suffixes the guest kernel can load itself
    // (finit_module with MODULE_INIT_COMPRESSED_FILE, which needs
    // CONFIG_MODULE_DECOMPRESS and supports only the configured format), e.g.
    // {".xz"}. Any other compressed module is an error: guest-init has no
    // decompressor.
    std::vector<std::string> loadable_compressed_suffixes;
};

class ModuleResolver {
  public:
    // Reads module_dir/modules.dep (required: without it nothing can be
    // resolved; depmod writes it) and module_dir/modules.builtin (missing:
    // nothing built in).
    static Result<ModuleResolver> open(const std::string& module_dir,
                                       ModuleResolverOptions options = {});

    const std::string& module_dir() const { return dir_; }
    bool is_builtin(std::string_view name) const;
    bool has_module(std::string_view name) const;  // listed in modules.dep

    // Wanted names that are neither modules nor built in, in the given order.
    std::vector<std::string> missing(const std::vector<std::string>& wanted_names) const;

    // The modules to load, dependencies first, each once; built-in ones are
    // skipped. Fails on a missing module (naming it and who needed it), a
    // module file absent from disk, a dependency cycle, or a compressed
    // module the kernel cannot load.
    Result<std::vector<Module>> resolve(const std::vector<std::string>& wanted_names) const;

  private:
    struct Entry {
        std::string relative_path;
        std::vector<std::string> deps;  // canonical names, in modules.dep order
    };

    std::string dir_;
    ModuleResolverOptions options_;
    std::map<std::string, Entry, std::less<>> modules_;
    std::set<std::string, std::less<>> builtin_;
};

// The release string of a bzImage ("6.1.0-56-amd64"), read from its setup
// header's kernel_version string, so any kernel file maps to its
// /lib/modules/<release> whatever it is called.
Result<std::string> release_of_kernel_image(const std::string& path);

}  // namespace kvmsandbox
