#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "guest-init/rootfs.h"

using namespace kvmsandbox::guest_init;
namespace fs = std::filesystem;

TEST(GuestInitRootfs, JoinRoot) {
    EXPECT_EQ(join_root("/newroot", "/usr"), "/newroot/usr");
    EXPECT_EQ(join_root("/newroot/", "/home/u/"), "/newroot/home/u");
    EXPECT_EQ(join_root("/newroot", "/"), "/newroot");
}

TEST(GuestInitRootfs, PathWithin) {
    EXPECT_TRUE(path_within("/home/u", "/home/u"));
    EXPECT_TRUE(path_within("/home/u/x", "/home/u/"));
    EXPECT_TRUE(path_within("/anything", "/"));
    EXPECT_FALSE(path_within("/home/user", "/home/u"));
    EXPECT_FALSE(path_within("/home", "/home/u"));
}

TEST(GuestInitRootfs, NinePOptions) {
    EXPECT_EQ(ninep_options(true),
              "trans=virtio,version=9p2000.L,msize=512000,access=client,cache=loose");
    EXPECT_EQ(ninep_options(false),
              "trans=virtio,version=9p2000.L,msize=512000,access=client,cache=mmap");
}

TEST(GuestInitRootfs, MountPlanLeavesTheRootShareToBuildRoot) {
    GuestConfig cfg;
    cfg.argv = {"true"};
    cfg.mounts = {{"kvmsb0", "/", false}, {"kvmsb1", "/usr", true}};
    auto plan = build_mount_plan(cfg, "/newroot");
    for (const auto& s : plan) EXPECT_NE(s.source, "kvmsb0") << s.target;
    EXPECT_EQ(plan.back().source, "kvmsb1");
}

TEST(GuestInitRootfs, MountPlanOrder) {
    GuestConfig cfg;
    cfg.argv = {"true"};
    cfg.mounts = {{"kvmsb0", "/usr", true}, {"kvmsb1", "/tmp/work", false}};
    auto plan = build_mount_plan(cfg, "/newroot");
    std::vector<std::string> targets;
    targets.reserve(plan.size());
    for (const auto& s : plan) targets.push_back(s.target);
    // The cwd share below /tmp comes after the /tmp tmpfs, or it would be hidden.
    EXPECT_EQ(targets,
              (std::vector<std::string>{"/newroot/dev", "/newroot/proc", "/newroot/sys",
                                        "/newroot/dev/pts", "/newroot/dev/shm", "/newroot/tmp",
                                        "/newroot/run", "/newroot/usr", "/newroot/tmp/work"}));
    EXPECT_EQ(plan[0].kind, MountStep::Kind::Move);
    EXPECT_EQ(plan[0].source, "/dev");
    EXPECT_EQ(plan[3].fstype, "devpts");
    EXPECT_NE(plan[3].data.find("ptmxmode=0666"), std::string::npos);
    EXPECT_EQ(plan[5].data, "mode=1777");
    const MountStep& usr = plan[7];
    EXPECT_EQ(usr.source, "kvmsb0");
    EXPECT_EQ(usr.fstype, "9p");
    EXPECT_TRUE(usr.flags & MS_RDONLY);
    EXPECT_TRUE(usr.retry_enoent);
    EXPECT_EQ(usr.data, ninep_options(true));
    const MountStep& work = plan[8];
    EXPECT_FALSE(work.flags & MS_RDONLY);
    EXPECT_EQ(work.data, ninep_options(false));
}

TEST(GuestInitRootfs, HomeIsSharedOnlyWhenUnderAShare) {
    GuestConfig cfg;
    cfg.home = "/home/u";
    cfg.mounts = {{"t0", "/usr", true}, {"t1", "/home/u/proj", false}};
    EXPECT_FALSE(home_is_shared(cfg));  // an ancestor of a share is still ours to create
    cfg.mounts.push_back({"t2", "/home", false});
    EXPECT_TRUE(home_is_shared(cfg));
}

namespace {

class GuestInitRootfsFs : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/guest_init_rootfs_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root_ = tmpl;
    }
    void TearDown() override { fs::remove_all(root_); }
    fs::path root_;
};

}  // namespace

TEST_F(GuestInitRootfsFs, MkdirP) {
    ASSERT_TRUE(mkdir_p((root_ / "a/b/c").string(), 0755));
    EXPECT_TRUE(fs::is_directory(root_ / "a/b/c"));
    EXPECT_TRUE(mkdir_p((root_ / "a/b/c").string(), 0755));  // already there
    std::ofstream(root_ / "file") << "x";
    auto r = mkdir_p((root_ / "file/sub").string(), 0755);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("file"), std::string::npos);
}

TEST_F(GuestInitRootfsFs, CopyTreeKeepsFilesModesAndSymlinks) {
    fs::path src = root_ / "src", dst = root_ / "dst";
    fs::create_directories(src / "etc" / "sub");
    std::ofstream(src / "etc" / "hosts") << "127.0.0.1 localhost\n";
    std::ofstream(src / "etc" / "sub" / "run.sh") << "#!/bin/sh\n";
    chmod((src / "etc" / "sub" / "run.sh").c_str(), 0750);
    chmod((src / "etc" / "sub").c_str(), 0700);
    fs::create_symlink("usr/bin", src / "bin");
    fs::create_directories(dst);
    auto r = copy_tree(src.string(), dst.string());
    ASSERT_TRUE(r) << r.error();
    std::ifstream hosts(dst / "etc" / "hosts");
    std::string line;
    std::getline(hosts, line);
    EXPECT_EQ(line, "127.0.0.1 localhost");
    struct stat st {};
    ASSERT_EQ(stat((dst / "etc" / "sub" / "run.sh").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    ASSERT_EQ(stat((dst / "etc" / "sub").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_TRUE(fs::is_symlink(dst / "bin"));
    EXPECT_EQ(fs::read_symlink(dst / "bin"), "usr/bin");
}

TEST_F(GuestInitRootfsFs, CopyTreeOfAMissingDirectoryFails) {
    EXPECT_FALSE(copy_tree((root_ / "nope").string(), root_.string()));
}
