#include <gtest/gtest.h>

#include "guest-init/config.h"
#include "protocol/guest_protocol.h"

using namespace kvmsandbox;
using namespace kvmsandbox::guest_init;

namespace {

std::string base_config() {
    std::string c;
    guest::append_record(c, "argv", "sh");
    guest::append_record(c, "argv", "-c");
    guest::append_record(c, "argv", "echo 'a\nb'");
    guest::append_record(c, "uid", "1000");
    guest::append_record(c, "gid", "100");
    return c;
}

}  // namespace

TEST(GuestInitConfig, ConvertsEveryRecord) {
    std::string c = base_config();
    guest::append_record(c, "env", "PATH=/usr/bin:/bin");
    guest::append_record(c, "env", "X=a=b\nc");
    guest::append_record(c, "cwd", "/home/u/p");
    guest::append_record(c, "group", "27");
    guest::append_record(c, "group", "100");
    guest::append_record(c, "tty", "1");
    guest::append_record(c, "rows", "40");
    guest::append_record(c, "cols", "120");
    guest::append_record(c, "hostname", "box");
    guest::append_record(c, "home", "/home/u");
    guest::append_record(c, "module", "virtio_console.ko");
    guest::append_record(c, "module", "9p.ko.xz");
    guest::append_record(c, "symlink", "/bin\nusr/bin");
    guest::append_record(c, "mount", "kvmsb0\n/usr\nro");
    guest::append_record(c, "mount", "kvmsb1\n/home/u/p\nrw");
    guest::append_record(c, "some-future-key", "ignored");
    auto cfg = parse_config(c);
    ASSERT_TRUE(cfg) << cfg.error();
    EXPECT_EQ(cfg->argv, (std::vector<std::string>{"sh", "-c", "echo 'a\nb'"}));
    EXPECT_EQ(cfg->env, (std::vector<std::string>{"PATH=/usr/bin:/bin", "X=a=b\nc"}));
    EXPECT_EQ(cfg->cwd, "/home/u/p");
    EXPECT_EQ(cfg->uid, 1000u);
    EXPECT_EQ(cfg->gid, 100u);
    EXPECT_EQ(cfg->groups, (std::vector<gid_t>{27, 100}));
    EXPECT_TRUE(cfg->tty);
    EXPECT_EQ(cfg->rows, 40);
    EXPECT_EQ(cfg->cols, 120);
    EXPECT_EQ(cfg->hostname, "box");
    EXPECT_EQ(cfg->home, "/home/u");
    EXPECT_EQ(cfg->modules, (std::vector<std::string>{"virtio_console.ko", "9p.ko.xz"}));
    EXPECT_EQ(cfg->symlinks, (std::vector<SymlinkSpec>{{"/bin", "usr/bin"}}));
    EXPECT_EQ(cfg->mounts,
              (std::vector<ShareMount>{{"kvmsb0", "/usr", true}, {"kvmsb1", "/home/u/p", false}}));
}

TEST(GuestInitConfig, DefaultsForOptionalRecords) {
    auto cfg = parse_config(base_config());
    ASSERT_TRUE(cfg) << cfg.error();
    EXPECT_EQ(cfg->cwd, "/");
    EXPECT_FALSE(cfg->tty);
    EXPECT_EQ(cfg->rows, 24);
    EXPECT_EQ(cfg->cols, 80);
    EXPECT_EQ(cfg->hostname, "kvmsandbox");
    EXPECT_EQ(cfg->umask, 022u);
    EXPECT_TRUE(cfg->home.empty());
    EXPECT_TRUE(cfg->mounts.empty());
}

TEST(GuestInitConfig, ZeroWindowSizeKeepsDefault) {
    std::string c = base_config();
    guest::append_record(c, "rows", "0");
    guest::append_record(c, "cols", "0");
    auto cfg = parse_config(c);
    ASSERT_TRUE(cfg);
    EXPECT_EQ(cfg->rows, 24);
    EXPECT_EQ(cfg->cols, 80);
}

TEST(GuestInitConfig, MissingArgvIsAnError) {
    std::string c;
    guest::append_record(c, "uid", "0");
    guest::append_record(c, "gid", "0");
    auto cfg = parse_config(c);
    ASSERT_FALSE(cfg);
    EXPECT_NE(cfg.error().find("argv"), std::string::npos);

    std::string empty_arg;
    guest::append_record(empty_arg, "argv", "");
    guest::append_record(empty_arg, "uid", "0");
    guest::append_record(empty_arg, "gid", "0");
    EXPECT_FALSE(parse_config(empty_arg));
}

TEST(GuestInitConfig, BadOrMissingIdsAreErrors) {
    for (const char* bad : {"", "-1", "abc", "12x", "4294967295", "99999999999"}) {
        std::string c;
        guest::append_record(c, "argv", "true");
        guest::append_record(c, "uid", bad);
        guest::append_record(c, "gid", "0");
        auto cfg = parse_config(c);
        ASSERT_FALSE(cfg) << "uid '" << bad << "' accepted";
        EXPECT_NE(cfg.error().find("uid"), std::string::npos);
    }
    std::string no_uid;
    guest::append_record(no_uid, "argv", "true");
    guest::append_record(no_uid, "gid", "0");
    EXPECT_FALSE(parse_config(no_uid));
    std::string no_gid;
    guest::append_record(no_gid, "argv", "true");
    guest::append_record(no_gid, "uid", "0");
    EXPECT_FALSE(parse_config(no_gid));
    EXPECT_EQ(parse_id("4294967294"), 4294967294u);
}

TEST(GuestInitConfig, RejectsWhatExecveCannotCarry) {
    std::string c = base_config();
    guest::append_record(c, "argv", std::string("a\0b", 3));
    EXPECT_FALSE(parse_config(c));
    std::string e = base_config();
    guest::append_record(e, "env", "NOEQUALS");
    EXPECT_FALSE(parse_config(e));
}

TEST(GuestInitConfig, RejectsMalformedRecordsAndValues) {
    EXPECT_FALSE(parse_config("argv 3:abc"));  // no newline
    for (auto [k, v] : std::vector<std::pair<const char*, const char*>>{{"cwd", "relative"},
                                                                        {"tty", "yes"},
                                                                        {"rows", "70000"},
                                                                        {"module", "../x.ko"},
                                                                        {"home", "u"},
                                                                        {"umask", "999"}}) {
        std::string c = base_config();
        guest::append_record(c, k, v);
        EXPECT_FALSE(parse_config(c)) << k << "=" << v;
    }
}

TEST(GuestInitConfig, MountRecords) {
    auto ro = parse_mount_record("kvmsb0\n/usr\nro");
    ASSERT_TRUE(ro);
    EXPECT_EQ(*ro, (ShareMount{"kvmsb0", "/usr", true}));
    auto rw = parse_mount_record("t\n/a b/c\nrw");
    ASSERT_TRUE(rw);
    EXPECT_EQ(*rw, (ShareMount{"t", "/a b/c", false}));
    EXPECT_FALSE(parse_mount_record("t\n/usr"));
    EXPECT_FALSE(parse_mount_record("t\n/usr\nrx"));
    EXPECT_FALSE(parse_mount_record("\n/usr\nro"));
    EXPECT_FALSE(parse_mount_record("t\nusr\nro"));
    EXPECT_FALSE(parse_mount_record("t,cache=none\n/usr\nro"));  // would inject options
    EXPECT_FALSE(parse_mount_record("t\n/usr\nro\nextra"));
}

TEST(GuestInitConfig, SymlinkRecords) {
    auto s = parse_symlink_record("/lib64\nusr/lib64");
    ASSERT_TRUE(s);
    EXPECT_EQ(*s, (SymlinkSpec{"/lib64", "usr/lib64"}));
    EXPECT_FALSE(parse_symlink_record("/lib64"));
    EXPECT_FALSE(parse_symlink_record("lib64\nusr/lib64"));
    EXPECT_FALSE(parse_symlink_record("/\nx"));
    EXPECT_FALSE(parse_symlink_record("/x\n"));
}

TEST(GuestInitConfig, KernelCmdlineFlag) {
    EXPECT_TRUE(cmdline_has_flag("console=ttyS0 kvmsandbox.debug quiet\n", "kvmsandbox.debug"));
    EXPECT_TRUE(cmdline_has_flag("kvmsandbox.debug=1", "kvmsandbox.debug"));
    EXPECT_TRUE(cmdline_has_flag("a\tkvmsandbox.debug\n", "kvmsandbox.debug"));
    EXPECT_FALSE(cmdline_has_flag("kvmsandbox.debugx", "kvmsandbox.debug"));
    EXPECT_FALSE(cmdline_has_flag("xkvmsandbox.debug", "kvmsandbox.debug"));
    EXPECT_FALSE(cmdline_has_flag("", "kvmsandbox.debug"));
    EXPECT_FALSE(cmdline_has_flag("kvmsandbox.debug=0", "kvmsandbox.debug"));
}
