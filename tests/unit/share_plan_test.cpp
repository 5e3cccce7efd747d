#include "sandbox/share_plan.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

using namespace kvmsandbox;
namespace fs = std::filesystem;

namespace {
struct FakeRoot {
    fs::path dir;
    FakeRoot() {
        char tmpl[] = "/tmp/kvmsandbox-root-XXXXXX";
        dir = ::mkdtemp(tmpl);
        fs::create_directories(dir / "usr/bin");
        fs::create_directories(dir / "etc");
        fs::create_directories(dir / "home/u/proj");
        fs::create_symlink("usr/bin", dir / "bin");
        fs::create_symlink("usr/lib", dir / "lib");
    }
    ~FakeRoot() { fs::remove_all(dir); }
};
const Share* find(const SharePlan& p, const std::string& guest) {
    for (const auto& s : p.shares)
        if (s.guest_path == guest) return &s;
    return nullptr;
}
}  // namespace

TEST(SharePlan, SystemReadOnlyCwdReadWriteSymlinksKept) {
    FakeRoot r;
    auto plan = plan_shares({"/home/u/proj", {}, r.dir.string(), {}});
    ASSERT_TRUE(plan) << plan.error().message;
    const Share* usr = find(*plan, "/usr");
    ASSERT_NE(usr, nullptr);
    EXPECT_TRUE(usr->read_only);
    const Share* etc = find(*plan, "/etc");
    ASSERT_NE(etc, nullptr);
    EXPECT_TRUE(etc->read_only);
    EXPECT_NE(std::find(etc->hidden.begin(), etc->hidden.end(), "shadow"), etc->hidden.end());
    // System directories show only what any host user may read; the cwd is
    // the user's own and keeps normal permissions.
    EXPECT_TRUE(etc->world_readable_only);
    EXPECT_TRUE(usr->world_readable_only);
    const Share* cwd = find(*plan, "/home/u/proj");
    ASSERT_NE(cwd, nullptr);
    EXPECT_FALSE(cwd->read_only);
    EXPECT_FALSE(cwd->world_readable_only);
    EXPECT_EQ(cwd->host_path, (r.dir / "home/u/proj").string());
    EXPECT_EQ(find(*plan, "/home"), nullptr);  // nothing else of the host
    ASSERT_EQ(plan->symlinks.size(), 2u);
    EXPECT_EQ(plan->symlinks[0].path, "/bin");
    EXPECT_EQ(plan->symlinks[0].target, "usr/bin");
    // Tags are unique and parents come first.
    for (size_t i = 0; i < plan->shares.size(); ++i)
        EXPECT_EQ(plan->shares[i].tag, "kvmsb" + std::to_string(i));
    EXPECT_EQ(plan->shares.back().guest_path, "/home/u/proj");
}

TEST(SharePlan, RefusesRootAsWorkingDirectory) {
    FakeRoot r;
    auto plan = plan_shares({"/", {}, r.dir.string(), {}});
    ASSERT_FALSE(plan);
    EXPECT_NE(plan.error().message.find("refusing"), std::string::npos);
}

TEST(SharePlan, ParseShareOption) {
    FakeRoot r;
    auto s = parse_share_option(r.dir.string() + ":/data:ro");
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s->guest_path, "/data");
    EXPECT_TRUE(s->read_only);
    EXPECT_FALSE(s->world_readable_only);  // --share: normal permissions, even :ro
    s = parse_share_option(r.dir.string());
    ASSERT_TRUE(s);
    EXPECT_EQ(s->guest_path, s->host_path);
    EXPECT_FALSE(s->read_only);
    for (std::string bad :
         {std::string("/nonexistent-dir-xyz"), r.dir.string() + ":relative", r.dir.string() + ":/",
          r.dir.string() + ":/proc/x", std::string(""), r.dir.string() + ":/a:/b:ro"}) {
        auto b = parse_share_option(bad);
        EXPECT_FALSE(b) << bad;
        if (!b) {
            EXPECT_NE(b.error().message.find("--share"), std::string::npos);
        }
    }
}

TEST(SharePlan, DuplicateGuestPathRefused) {
    FakeRoot r;
    auto extra = parse_share_option(r.dir.string() + ":/home/u/proj");
    ASSERT_TRUE(extra);
    auto plan = plan_shares({"/home/u/proj", {*extra}, r.dir.string(), {}});
    EXPECT_FALSE(plan);
}

namespace {

TEST(SharePlan, GuestRootComesFirstReadWriteAndSystemDirsStillMountedInIt) {
    FakeRoot r;
    auto plan = plan_shares({"/home/u/proj", {}, r.dir.string(), "/store/dev1"});
    ASSERT_TRUE(plan) << plan.error().message;
    ASSERT_FALSE(plan->shares.empty());
    EXPECT_EQ(plan->shares[0].guest_path, "/");
    EXPECT_EQ(plan->shares[0].host_path, "/store/dev1");
    EXPECT_FALSE(plan->shares[0].read_only);
    EXPECT_FALSE(plan->shares[0].world_readable_only);  // the user's own rootfs
    const Share* usr = find(*plan, "/usr");
    ASSERT_NE(usr, nullptr);
    EXPECT_TRUE(usr->read_only);
}

}  // namespace
