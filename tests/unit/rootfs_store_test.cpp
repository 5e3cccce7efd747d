#include "sandbox/rootfs_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace kvmsandbox {
namespace {

class RootfsStore : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("rootfs-store-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        ::setenv("KVMSANDBOX_ROOTFS_DIR", dir_.c_str(), 1);
    }
    void TearDown() override {
        ::unsetenv("KVMSANDBOX_ROOTFS_DIR");
        std::filesystem::remove_all(dir_);
    }
    std::filesystem::path dir_;
};

mode_t mode_of(const std::filesystem::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
}

TEST_F(RootfsStore, SetupCreatesTheSkeletonWithExactModes) {
    const mode_t old = ::umask(077);
    auto r = create_rootfs("dev1");
    ::umask(old);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(*r, (dir_ / "dev1").string());
    EXPECT_EQ(mode_of(dir_ / "dev1" / "tmp"), 01777u);
    EXPECT_EQ(mode_of(dir_ / "dev1" / "var" / "tmp"), 01777u);
    EXPECT_EQ(mode_of(dir_ / "dev1" / "root"), 0700u);
    EXPECT_EQ(mode_of(dir_ / "dev1" / "etc"), 0755u);
    auto found = find_rootfs("dev1");
    ASSERT_TRUE(found);
    EXPECT_EQ(*found, *r);
}

TEST_F(RootfsStore, SetupRefusesAnExistingNameAndBadNames) {
    ASSERT_TRUE(create_rootfs("a"));
    auto again = create_rootfs("a");
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().message.find("already exists"), std::string::npos);
    for (const char* bad : {"", "..", "../x", "a/b", "-x", ".hidden"})
        EXPECT_FALSE(create_rootfs(bad)) << bad;
    EXPECT_FALSE(std::filesystem::exists(dir_ / ".." / "x"));
}

TEST_F(RootfsStore, FindNamesSetupWhenMissing) {
    auto r = find_rootfs("nope");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("kvmsandbox setup nope"), std::string::npos)
        << r.error().message;
    EXPECT_FALSE(find_rootfs("../etc"));
}

}  // namespace
}  // namespace kvmsandbox
