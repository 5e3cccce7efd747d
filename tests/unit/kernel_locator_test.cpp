#include "boot/kernel_locator.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "temp_dir.h"

using namespace kvmsandbox;
namespace fs = std::filesystem;

namespace {
struct TempBoot : kvmsandbox::testing::TempDir {
    TempBoot() : kvmsandbox::testing::TempDir("boot"), dir(path) {}
    fs::path dir;
    void touch(const std::string& name) { std::ofstream(dir / name) << "x"; }
};
}  // namespace

TEST(KernelLocator, PrefersEnvThenHostReleaseThenNewest) {
    TempBoot b;
    b.touch("vmlinuz-6.1.0-9-amd64");
    b.touch("vmlinuz-6.1.0-10-amd64");
    b.touch("config-6.1.0-99-amd64");
    KernelSearch s{b.dir.string(), "6.1.0-9-amd64", ""};
    EXPECT_EQ(*find_default_kernel(s), (b.dir / "vmlinuz-6.1.0-9-amd64").string());
    s.host_release = "6.18.0-other";
    EXPECT_EQ(*find_default_kernel(s), (b.dir / "vmlinuz-6.1.0-10-amd64").string());
    s.env_kernel = (b.dir / "vmlinuz-6.1.0-9-amd64").string();
    EXPECT_EQ(*find_default_kernel(s), s.env_kernel);
}

TEST(KernelLocator, MissingKernelSaysWhatToInstall) {
    TempBoot b;
    KernelSearch s{b.dir.string(), "6.1.0-9-amd64", ""};
    auto r = find_default_kernel(s);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("linux-image-amd64"), std::string::npos);
    s.env_kernel = "/nonexistent/vmlinuz";
    r = find_default_kernel(s);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("KVMSANDBOX_KERNEL"), std::string::npos);
}
