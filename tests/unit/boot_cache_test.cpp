#include "boot/boot_cache.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fake_kernel_tree.h"

namespace kvmsandbox {
namespace {

namespace fs = std::filesystem;
using fake::FakeSystem;
using fake::kGenericDep;

const std::vector<uint8_t> kInit = {0x7f, 'E', 'L', 'F', 1, 2, 3};

BootImage image(std::string tag) {
    return BootImage{{"a.ko", tag + ".ko"}, std::vector<uint8_t>(tag.begin(), tag.end())};
}

struct CacheDir {
    fs::path dir = fs::path(FakeSystem().dir.string() + "-cache");  // a fresh, absent path
    ~CacheDir() { fs::remove_all(dir); }
};

TEST(BootCache, BuildsOnceThenServesTheStoredImage) {
    CacheDir d;
    BootCache cache(d.dir.string());
    int builds = 0;
    auto build = [&]() -> Result<BootImage> {
        ++builds;
        return image("first");
    };
    auto a = cache.get("key one", build);
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_EQ(builds, 1);
    EXPECT_TRUE(fs::exists(cache.path_for("key one")));
    EXPECT_EQ(fs::status(d.dir).permissions() & fs::perms::all, fs::perms::owner_all);
    auto b = cache.get("key one", build);
    ASSERT_TRUE(b);
    EXPECT_EQ(builds, 1) << "the second start must not rebuild";
    EXPECT_EQ(b->module_files, a->module_files);
    EXPECT_EQ(b->archive, a->archive);

    auto c = cache.get("key two", [&]() -> Result<BootImage> {
        ++builds;
        return image("second");
    });
    ASSERT_TRUE(c);
    EXPECT_EQ(builds, 2);
    EXPECT_EQ(c->module_files[1], "second.ko");
}

TEST(BootCache, CorruptOrForeignFilesAreRebuilt) {
    CacheDir d;
    BootCache cache(d.dir.string());
    int builds = 0;
    auto build = [&]() -> Result<BootImage> {
        ++builds;
        return image("data");
    };
    ASSERT_TRUE(cache.get("k", build));
    const std::string path = cache.path_for("k");
    const auto size = fs::file_size(path);
    for (auto damage : {size - 1, size / 2, uintmax_t{0}}) {
        fs::resize_file(path, damage);
        auto r = cache.get("k", build);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->archive, image("data").archive);
    }
    EXPECT_EQ(builds, 4);
    std::ofstream(path, std::ios::trunc) << "magic 5:other\nkey 1:k\narchive 1:x\n";
    ASSERT_TRUE(cache.get("k", build));
    EXPECT_EQ(builds, 5);
    // A file stored for another key under the same name (a hash collision)
    // is not taken for this one.
    fs::copy_file(cache.path_for("k"), cache.path_for("other"),
                  fs::copy_options::overwrite_existing);
    ASSERT_TRUE(cache.get("other", build));
    EXPECT_EQ(builds, 6);
}

TEST(BootCache, NoDirectoryOrAnUnwritableOneStillBuilds) {
    int builds = 0;
    auto build = [&]() -> Result<BootImage> {
        ++builds;
        return image("x");
    };
    BootCache none("");
    EXPECT_TRUE(none.get("k", build));
    EXPECT_TRUE(none.get("k", build));
    EXPECT_EQ(builds, 2);
    EXPECT_EQ(none.path_for("k"), "");

    FakeSystem s;  // a regular file where the directory should be
    BootCache bad((s.kernel / "sub").string());
    EXPECT_TRUE(bad.get("k", build));
    EXPECT_EQ(builds, 3);
}

TEST(BootCache, BuildErrorsPassThroughAndAreNotStored) {
    CacheDir d;
    BootCache cache(d.dir.string());
    auto r = cache.get("k", []() -> Result<BootImage> { return fail("no modules"); });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "no modules");
    EXPECT_FALSE(fs::exists(cache.path_for("k")));
}

TEST(BootCache, KeepsOnlyTheNewestImages) {
    CacheDir d;
    BootCache cache(d.dir.string());
    for (int i = 0; i < 12; ++i)
        ASSERT_TRUE(
            cache.get("key " + std::to_string(i), [] { return Result<BootImage>(image("i")); }));
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(d.dir)) n += e.path().extension() == ".img";
    EXPECT_LE(n, 8u);
    EXPECT_TRUE(fs::exists(cache.path_for("key 11")));
}

TEST(BootCacheKey, ChangesWithWhatTheImageIsBuiltFrom) {
    FakeSystem s;
    s.modules(kGenericDep);
    auto k1 = boot_cache_key(s.kernel.string(), {}, s.modules_root.string());
    ASSERT_TRUE(k1) << k1.error().message;
    EXPECT_EQ(*boot_cache_key(s.kernel.string(), {}, s.modules_root.string()), *k1);
    EXPECT_NE(*boot_cache_key(s.kernel.string(), {"virtio_net"}, s.modules_root.string()), *k1);
    // depmod run again (a module installed or removed): a new key.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s.modules(kGenericDep);
    EXPECT_NE(*boot_cache_key(s.kernel.string(), {}, s.modules_root.string()), *k1);
    EXPECT_FALSE(boot_cache_key((s.dir / "nope").string(), {}, s.modules_root.string()));
}

TEST(PrepareBootImage, PlansOnceAndReusesWhileNothingChanged) {
    FakeSystem s;
    s.modules(kGenericDep);
    CacheDir d;
    BootCache cache(d.dir.string());
    auto a = prepare_boot_image(cache, kInit, s.kernel.string(), {}, s.modules_root.string());
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_FALSE(a->module_files.empty());
    EXPECT_EQ(a->module_files.back(), "9p.ko");
    EXPECT_GT(a->archive.size(), kInit.size());
    // With the modules gone but modules.dep untouched, the stored image serves.
    fs::remove_all(s.mdir() / "kernel");
    auto b = prepare_boot_image(cache, kInit, s.kernel.string(), {}, s.modules_root.string());
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_EQ(b->archive, a->archive);
    EXPECT_EQ(b->module_files, a->module_files);
    // Once depmod ran again the plan is redone, and now it fails as it should.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s.write(s.mdir() / "modules.dep", "");
    auto c = prepare_boot_image(cache, kInit, s.kernel.string(), {}, s.modules_root.string());
    EXPECT_FALSE(c);
}

TEST(PrepareBootImage, ANonKernelGetsThePlannersMessage) {
    FakeSystem s;
    CacheDir d;
    BootCache cache(d.dir.string());
    auto r =
        prepare_boot_image(cache, kInit, (s.dir / "boot").string(), {}, s.modules_root.string());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("cannot be used"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace kvmsandbox
