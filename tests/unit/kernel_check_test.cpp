#include "boot/kernel_check.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "fake_kernel_tree.h"

using namespace kvmsandbox;
using fake::FakeSystem;
using fake::kGenericDep;
using fake::kRelease;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> names(const std::vector<Module>& ms) {
    std::vector<std::string> out;
    for (const auto& m : ms) out.push_back(m.name);
    return out;
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

TEST(KernelCheck, PlansGenericKernelModulesInLoadOrder) {
    FakeSystem s;
    s.modules(kGenericDep);
    auto plan = plan_kernel(s.kernel.string(), s.modules_root.string());
    ASSERT_TRUE(plan) << plan.error().message;
    EXPECT_EQ(plan->kernel_path, s.kernel.string());
    EXPECT_EQ(plan->release, kRelease);
    EXPECT_EQ(names(plan->modules),
              (std::vector<std::string>{"virtio_ring", "virtio", "virtio_pci_modern_dev",
                                        "virtio_pci_legacy_dev", "virtio_pci", "virtio_console",
                                        "9pnet", "9pnet_virtio", "netfs", "fscache", "9p"}));
    EXPECT_EQ(plan->modules.back().absolute_path, (s.mdir() / "kernel/fs/9p/9p.ko").string());

    auto net = plan_kernel(s.kernel.string(), s.modules_root.string(), {"virtio_net"});
    ASSERT_TRUE(net) << net.error().message;
    EXPECT_EQ(names(net->modules).back(), "virtio_net");
    EXPECT_EQ(names(net->modules).at(net->modules.size() - 2), "failover");
}

TEST(KernelCheck, BuiltinDriversNeedNoModules) {
    FakeSystem s;
    s.modules({"kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet.ko:"},
              "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n"
              "kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/char/virtio_console.ko\n"
              "kernel/net/9p/9pnet_virtio.ko\n");
    auto plan = plan_kernel(s.kernel.string(), s.modules_root.string());
    ASSERT_TRUE(plan) << plan.error().message;
    EXPECT_EQ(names(plan->modules), (std::vector<std::string>{"9pnet", "9p"}));
}

TEST(KernelCheck, NoNinePSaysWhatToInstall) {
    FakeSystem s;
    std::vector<std::string> dep;
    for (const auto& l : kGenericDep)
        if (!l.starts_with("kernel/fs/9p/")) dep.push_back(l);
    s.modules(dep);
    auto plan = plan_kernel(s.kernel.string(), s.modules_root.string());
    ASSERT_FALSE(plan);
    const auto& m = plan.error().message;
    EXPECT_TRUE(
        contains(m, "kernel " + s.kernel.string() + " (" + kRelease + ") has no 9p support"))
        << m;
    EXPECT_TRUE(contains(m, "module 9p not found in " + s.mdir().string() + " and not built in"))
        << m;
    EXPECT_TRUE(contains(m, "apt-get install linux-image-amd64")) << m;
    EXPECT_EQ(plan.error().exit_code, 125);
}

TEST(KernelCheck, NoModuleDirSaysInstallMatchingModules) {
    FakeSystem s;
    auto plan = plan_kernel(s.kernel.string(), s.modules_root.string());
    ASSERT_FALSE(plan);
    const auto& m = plan.error().message;
    EXPECT_TRUE(contains(m, s.kernel.string())) << m;
    EXPECT_TRUE(contains(m, "install the matching modules")) << m;
    EXPECT_TRUE(contains(m, std::string("linux-image-") + kRelease)) << m;

    // Unless its config shows every driver built in.
    s.write(
        s.kernel.parent_path() / (std::string("config-") + kRelease),
        "CONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_NET_9P_VIRTIO=y\nCONFIG_9P_FS=y\n");
    auto builtin = plan_kernel(s.kernel.string(), s.modules_root.string());
    ASSERT_TRUE(builtin) << builtin.error().message;
    EXPECT_TRUE(builtin->modules.empty());
    EXPECT_FALSE(plan_kernel(s.kernel.string(), s.modules_root.string(), {"virtio_net"}));
}

TEST(KernelCheck, CompressedModulesFollowKernelConfig) {
    FakeSystem s;
    std::vector<std::string> dep;
    for (auto l : kGenericDep) {
        for (size_t p; (p = l.find(".ko")) != std::string::npos && l.compare(p, 6, ".ko.xz") != 0;)
            l.replace(p, 3, ".ko.xz");
        dep.push_back(l);
    }
    s.modules(dep);
    auto plan = plan_kernel(s.kernel.string(), s.modules_root.string());
    ASSERT_FALSE(plan);
    EXPECT_TRUE(contains(plan.error().message, "compressed")) << plan.error().message;

    s.write(s.kernel.parent_path() / (std::string("config-") + kRelease),
            "CONFIG_MODULE_COMPRESS_XZ=y\nCONFIG_MODULE_DECOMPRESS=y\n");
    plan = plan_kernel(s.kernel.string(), s.modules_root.string());
    ASSERT_TRUE(plan) << plan.error().message;
    EXPECT_EQ(plan->modules.back().file_name(), "9p.ko.xz");
}

TEST(KernelCheck, NotAKernel) {
    FakeSystem s;
    s.write(s.dir / "boot" / "junk", "junk");
    auto plan = plan_kernel((s.dir / "boot" / "junk").string(), s.modules_root.string());
    ASSERT_FALSE(plan);
    EXPECT_TRUE(contains(plan.error().message, "junk")) << plan.error().message;
}

TEST(KernelCheck, RealKernelOnThisMachine) {
    std::vector<fs::path> kernels;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/boot", ec))
        if (e.path().filename().string().starts_with("vmlinuz-") &&
            ::access(e.path().c_str(), R_OK) == 0)
            kernels.push_back(e.path());
    if (kernels.empty() || !fs::is_directory("/lib/modules")) {
        std::printf(
            "no readable /boot/vmlinuz-* or no /lib/modules: skipping the real-kernel check\n");
        GTEST_SKIP() << "no real kernel";
    }
    for (const auto& k : kernels) {
        auto plan = plan_kernel(k.string());
        if (!plan) {
            // A kernel may legitimately be unusable (e.g. the cloud flavour);
            // the refusal must then name it.
            std::printf("%s: %s\n", k.c_str(), plan.error().message.c_str());
            EXPECT_TRUE(contains(plan.error().message, k.string()));
            continue;
        }
        std::string list;
        for (const auto& m : plan->modules) list += " " + m.name;
        std::printf("%s (%s):%s\n", k.c_str(), plan->release.c_str(), list.c_str());
        EXPECT_FALSE(plan->release.empty());
        for (const auto& m : plan->modules) EXPECT_TRUE(fs::is_regular_file(m.absolute_path));
    }
}
