#include "boot/module_resolver.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "fake_kernel_tree.h"
#include "temp_dir.h"

using namespace kvmsandbox;
namespace fs = std::filesystem;

namespace {

using kvmsandbox::fake::fake_bzimage;

// A module tree laid out like /lib/modules/<release>: modules.dep,
// modules.builtin and dummy .ko files.
struct FakeTree : kvmsandbox::testing::TempDir {
    FakeTree() : kvmsandbox::testing::TempDir("mods"), dir(path) {}
    fs::path dir;
    void write(const std::string& rel, const std::string& text) {
        fs::create_directories((dir / rel).parent_path());
        std::ofstream(dir / rel) << text;
    }
    // Writes modules.dep and a dummy file for each module it lists first on a line.
    void dep(const std::string& text, bool create_files = true) {
        write("modules.dep", text);
        if (!create_files) return;
        size_t pos = 0;
        while (pos < text.size()) {
            size_t nl = text.find('\n', pos);
            std::string line = text.substr(pos, nl - pos);
            pos = nl == std::string::npos ? text.size() : nl + 1;
            size_t colon = line.find(':');
            if (colon != std::string::npos)
                write(line.substr(0, colon),
                      "\x7f"
                      "ELF dummy");
        }
    }
};

std::vector<std::string> names(const std::vector<Module>& ms) {
    std::vector<std::string> out;
    for (const auto& m : ms) out.push_back(m.name);
    return out;
}

const char* kDep =
    "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko "
    "kernel/fs/netfs/netfs.ko\n"
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/virtio/virtio_ring.ko:\n"
    "kernel/fs/netfs/netfs.ko:\n"
    "kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n"
    "kernel/net/9p/9pnet.ko:\n"
    "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/misc/dash-name.ko: kernel/drivers/virtio/virtio.ko\n"
    "kernel/x/cyc_a.ko: kernel/x/cyc-b.ko\n"
    "kernel/x/cyc-b.ko: kernel/x/cyc_a.ko\n"
    "kernel/x/needs_ghost.ko: kernel/x/ghost.ko\n"
    "kernel/x/uses_builtin.ko: kernel/drivers/virtio/virtio_pci.ko\n";

}  // namespace

TEST(ModuleResolver, ClosureInLoadOrderEachOnce) {
    FakeTree t;
    t.dep(kDep);
    t.write("modules.builtin", "kernel/drivers/virtio/virtio_pci.ko\n");
    auto r = ModuleResolver::open(t.dir.string());
    ASSERT_TRUE(r) << r.error().message;
    auto ms = r->resolve({"virtio_pci", "virtio_console", "9pnet_virtio", "9p"});
    ASSERT_TRUE(ms) << ms.error().message;
    EXPECT_EQ(names(*ms),
              (std::vector<std::string>{"virtio_ring", "virtio", "virtio_console", "9pnet",
                                        "9pnet_virtio", "netfs", "fscache", "9p"}));
    const Module& p9 = ms->back();
    EXPECT_EQ(p9.relative_path, "kernel/fs/9p/9p.ko");
    EXPECT_EQ(p9.absolute_path, (t.dir / "kernel/fs/9p/9p.ko").string());
    EXPECT_EQ(p9.file_name(), "9p.ko");
    EXPECT_FALSE(p9.compressed());
}

TEST(ModuleResolver, BuiltinSkippedAndDashUnderscoreEquivalent) {
    FakeTree t;
    t.dep(kDep);
    t.write("modules.builtin",
            "kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/virtio/virtio_ring.ko\n");
    auto r = ModuleResolver::open(t.dir.string());
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->is_builtin("virtio-pci"));
    EXPECT_TRUE(r->has_module("dash_name"));
    EXPECT_TRUE(r->has_module("9pnet-virtio"));
    // virtio_ring is listed in both (an inconsistent tree): built in wins,
    // since the kernel would not load it twice.
    auto ms = r->resolve({"dash_name", "virtio-pci", "uses-builtin"});
    ASSERT_TRUE(ms) << ms.error().message;
    EXPECT_EQ(names(*ms), (std::vector<std::string>{"virtio", "dash_name", "uses_builtin"}));
    EXPECT_EQ(ms->at(1).file_name(), "dash-name.ko");
    EXPECT_EQ(canonical_module_name("kernel/a/b-c.ko.zst"), "b_c");
    EXPECT_EQ(canonical_module_name("b-c"), "b_c");
}

TEST(ModuleResolver, MissingModulesAreNamed) {
    FakeTree t;
    t.dep(kDep);
    auto r = ModuleResolver::open(t.dir.string());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->missing({"9p", "nosuch", "virtio_pci"}),
              (std::vector<std::string>{"nosuch", "virtio_pci"}));
    auto ms = r->resolve({"9p", "nosuch"});
    ASSERT_FALSE(ms);
    EXPECT_NE(ms.error().message.find("module nosuch not found in " + t.dir.string() +
                                      " and not built in"),
              std::string::npos)
        << ms.error().message;
    ms = r->resolve({"needs_ghost"});
    ASSERT_FALSE(ms);
    EXPECT_NE(ms.error().message.find("module ghost (needed by needs_ghost)"), std::string::npos)
        << ms.error().message;
}

TEST(ModuleResolver, MissingFileOnDisk) {
    FakeTree t;
    t.dep(kDep);
    fs::remove(t.dir / "kernel/fs/netfs/netfs.ko");
    auto r = ModuleResolver::open(t.dir.string());
    ASSERT_TRUE(r);
    auto ms = r->resolve({"9p"});
    ASSERT_FALSE(ms);
    EXPECT_NE(ms.error().message.find("netfs.ko is missing"), std::string::npos)
        << ms.error().message;
}

TEST(ModuleResolver, CycleIsAnErrorNotAHang) {
    FakeTree t;
    t.dep(kDep);
    auto r = ModuleResolver::open(t.dir.string());
    ASSERT_TRUE(r);
    auto ms = r->resolve({"cyc_a"});
    ASSERT_FALSE(ms);
    EXPECT_NE(ms.error().message.find("cycle"), std::string::npos) << ms.error().message;
    EXPECT_NE(ms.error().message.find("cyc_a -> cyc_b -> cyc_a"), std::string::npos)
        << ms.error().message;
}

TEST(ModuleResolver, NoIndexIsAnError) {
    FakeTree t;
    auto r = ModuleResolver::open(t.dir.string());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("modules.dep"), std::string::npos) << r.error().message;
}

TEST(ModuleResolver, CompressedModulesNeedKernelDecompression) {
    FakeTree t;
    t.dep("kernel/a/leaf.ko.xz:\nkernel/a/top.ko: kernel/a/leaf.ko.xz\n");
    auto r = ModuleResolver::open(t.dir.string());
    ASSERT_TRUE(r);
    auto ms = r->resolve({"top"});
    ASSERT_FALSE(ms);
    EXPECT_NE(ms.error().message.find("compressed"), std::string::npos) << ms.error().message;

    auto r2 = ModuleResolver::open(t.dir.string(), {.loadable_compressed_suffixes = {".xz"}});
    ASSERT_TRUE(r2);
    ms = r2->resolve({"top"});
    ASSERT_TRUE(ms) << ms.error().message;
    EXPECT_EQ(names(*ms), (std::vector<std::string>{"leaf", "top"}));
    EXPECT_TRUE(ms->at(0).compressed());
    EXPECT_EQ(ms->at(0).file_name(), "leaf.ko.xz");
}

namespace {

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST(ModuleResolver, ReleaseOfKernelImage) {
    FakeTree t;
    write_bytes(
        t.dir / "vmlinuz",
        fake_bzimage("6.1.0-99-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC"));
    auto rel = release_of_kernel_image((t.dir / "vmlinuz").string());
    ASSERT_TRUE(rel) << rel.error().message;
    EXPECT_EQ(*rel, "6.1.0-99-amd64");

    write_bytes(t.dir / "bad-ptr", fake_bzimage("x", 0xfff0));
    EXPECT_FALSE(release_of_kernel_image((t.dir / "bad-ptr").string()));
    write_bytes(t.dir / "slash", fake_bzimage("../../etc #1"));
    EXPECT_FALSE(release_of_kernel_image((t.dir / "slash").string()));
    t.write("text", "not a kernel at all");
    auto r = release_of_kernel_image((t.dir / "text").string());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("not a bzImage"), std::string::npos);
    EXPECT_FALSE(release_of_kernel_image((t.dir / "missing").string()));
}
