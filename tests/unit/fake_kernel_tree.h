// A fake /boot and /lib/modules for tests of kernel planning: a synthetic
// bzImage whose setup header names a release, and a module tree whose
// modules.dep the test writes (module files are dummies).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace kvmsandbox::fake {

namespace fs = std::filesystem;

inline constexpr const char* kRelease = "6.1.0-99-fake";

// A minimal bzImage: boot sector signature, "HdrS", protocol 2.15, and the
// kernel_version pointer to a version string inside the setup code.
inline std::vector<uint8_t> fake_bzimage(const std::string& version, uint16_t ptr = 0x0400) {
    std::vector<uint8_t> img(0x2000, 0);
    img[0x1fe] = 0x55;
    img[0x1ff] = 0xaa;
    std::memcpy(&img[0x202], "HdrS", 4);
    img[0x206] = 0x0f;
    img[0x207] = 0x02;
    img[0x20e] = static_cast<uint8_t>(ptr & 0xff);
    img[0x20f] = static_cast<uint8_t>(ptr >> 8);
    if (0x200u + ptr + version.size() < img.size())
        std::copy(version.c_str(), version.c_str() + version.size() + 1, img.begin() + 0x200 + ptr);
    return img;
}

// A /boot with a synthetic bzImage and a /lib/modules beside it.
struct FakeSystem {
    fs::path dir;
    fs::path kernel;
    fs::path modules_root;
    FakeSystem() {
        char tmpl[] = "/tmp/kvmsandbox-kcheck-XXXXXX";
        dir = ::mkdtemp(tmpl);
        fs::create_directories(dir / "boot");
        modules_root = dir / "modules";
        fs::create_directories(modules_root);
        // Named unlike its release on purpose: the release comes from the image.
        kernel = dir / "boot" / "vmlinuz-custom";
        // kernel_version 0x300: the string at 0x500.
        auto img = fake_bzimage(std::string(kRelease) + " (builder@host) #1 SMP", 0x300);
        std::ofstream(kernel, std::ios::binary)
            .write(reinterpret_cast<const char*>(img.data()),
                   static_cast<std::streamsize>(img.size()));
    }
    ~FakeSystem() { fs::remove_all(dir); }
    fs::path mdir() const { return modules_root / kRelease; }
    void write(const fs::path& p, const std::string& text) {
        fs::create_directories(p.parent_path());
        std::ofstream(p) << text;
    }
    void modules(const std::vector<std::string>& dep_lines, const std::string& builtin = "") {
        std::string dep;
        for (const auto& l : dep_lines) {
            dep += l + "\n";
            write(mdir() / l.substr(0, l.find(':')), "dummy");
        }
        write(mdir() / "modules.dep", dep);
        write(mdir() / "modules.builtin", builtin);
    }
};

inline const std::vector<std::string> kGenericDep = {
    "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko "
    "kernel/fs/netfs/netfs.ko",
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio_ring.ko:",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko:",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko:",
    "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko "
    "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
    "kernel/net/core/failover.ko:",
    "kernel/fs/netfs/netfs.ko:",
    "kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko",
    "kernel/net/9p/9pnet.ko:",
    "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko",
};

}  // namespace kvmsandbox::fake
