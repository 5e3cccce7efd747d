#include "control/instance_dir.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

namespace kvmsandbox::control {
namespace {

namespace fs = std::filesystem;

// Sets or unsets an environment variable for one scope.
class EnvVar {
  public:
    EnvVar(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    ~EnvVar() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }

  private:
    const char* name_;
    std::optional<std::string> old_;
};

// A unix socket bound at `path`; listening unless told otherwise.
UniqueFd bind_socket(const std::string& path, bool listening = true) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << path;
    if (listening) {
        EXPECT_EQ(::listen(fd.get(), 4), 0);
    }
    return fd;
}

class ControlInstanceDir : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kvmsb-ctl-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        dir_ = root_ + "/inst";
        ASSERT_TRUE(ensure_private_dir(dir_));
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }

    std::string root_;
    std::string dir_;
};

TEST(ControlInstanceName, AcceptsGoodNames) {
    for (std::string name : {"a", "Z", "0", "vm-123abc", "A.b_c-d", "web.1", "a..b", "x-"})
        EXPECT_TRUE(validate_instance_name(name)) << name;
    EXPECT_TRUE(validate_instance_name(std::string(64, 'n')));
}

TEST(ControlInstanceName, RejectsBadNames) {
    for (std::string name : {"", ".", "..", ".hidden", "-rf", "a/b", "../x", "a b", "a\nb",
                             "caf\xc3\xa9", "a:b", "a*", "$x", "a\\b"})
        EXPECT_FALSE(validate_instance_name(name)) << name;
    EXPECT_FALSE(validate_instance_name(std::string("a\0b", 3)));
    auto r = validate_instance_name(std::string(65, 'n'));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("too long"), std::string::npos);
    // A hostile name is not echoed back.
    auto esc = validate_instance_name("a\x1b[2Jb");
    ASSERT_FALSE(esc);
    EXPECT_EQ(esc.error().message.find('\x1b'), std::string::npos);
}

TEST(ControlInstanceName, RandomNamesAreValid) {
    for (int i = 0; i < 50; ++i) {
        std::string name = random_instance_name();
        EXPECT_TRUE(validate_instance_name(name)) << name;
        ASSERT_EQ(name.size(), 9u);
        EXPECT_EQ(name.substr(0, 3), "vm-");
        EXPECT_EQ(name.find_first_not_of("0123456789abcdef", 3), std::string::npos) << name;
    }
}

TEST_F(ControlInstanceDir, SocketPath) {
    EXPECT_EQ(instance_socket_path(dir_, "web").value(), dir_ + "/web.sock");
    EXPECT_FALSE(instance_socket_path(dir_, "../web"));
    auto r = instance_socket_path("/" + std::string(100, 'd'), "web");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("too long for a unix socket"), std::string::npos);
}

TEST_F(ControlInstanceDir, OverrideIsCreatedPrivate) {
    std::string want = root_ + "/override";
    EnvVar env("KVMSANDBOX_INSTANCE_DIR", want.c_str());
    auto d = instance_dir();
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(*d, want);
    struct stat st {};
    ASSERT_EQ(::stat(want.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    // Again, now that it exists.
    EXPECT_TRUE(instance_dir());
}

TEST_F(ControlInstanceDir, RefusesGroupOrWorldWritable) {
    EnvVar env("KVMSANDBOX_INSTANCE_DIR", dir_.c_str());
    for (mode_t mode : {0777, 0720, 0702}) {
        ASSERT_EQ(::chmod(dir_.c_str(), mode), 0);
        auto d = instance_dir();
        ASSERT_FALSE(d) << fmt::format("{:o}", mode);
        EXPECT_NE(d.error().message.find("group- or world-writable"), std::string::npos);
    }
    // Readable by others is not a hazard.
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    EXPECT_TRUE(instance_dir());
}

TEST_F(ControlInstanceDir, RefusesForeignOwner) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory away";
    EnvVar env("KVMSANDBOX_INSTANCE_DIR", dir_.c_str());
    ASSERT_EQ(::chown(dir_.c_str(), 12345, 12345), 0);
    auto d = instance_dir();
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("owned by uid 12345"), std::string::npos);
}

TEST_F(ControlInstanceDir, RefusesNonDirectory) {
    std::string file = root_ + "/file";
    std::ofstream(file) << "x";
    EXPECT_FALSE(ensure_private_dir(file));
    EXPECT_FALSE(ensure_private_dir(root_ + "/missing/parent"));
}

TEST_F(ControlInstanceDir, PrefersXdgRuntimeDirThenHome) {
    EnvVar no_override("KVMSANDBOX_INSTANCE_DIR", nullptr);
    std::string xdg = root_ + "/xdg";
    ASSERT_EQ(::mkdir(xdg.c_str(), 0700), 0);
    std::string home = root_ + "/home";
    ASSERT_EQ(::mkdir(home.c_str(), 0755), 0);
    EnvVar h("HOME", home.c_str());
    {
        EnvVar x("XDG_RUNTIME_DIR", xdg.c_str());
        EXPECT_EQ(instance_dir().value(), xdg + "/kvmsandbox");
    }
    {
        std::string missing = root_ + "/no-such-dir";
        EnvVar x("XDG_RUNTIME_DIR", missing.c_str());
        EXPECT_EQ(instance_dir().value(), home + "/.kvmsandbox");
    }
    {
        EnvVar x("XDG_RUNTIME_DIR", "relative/path");
        EXPECT_EQ(instance_dir().value(), home + "/.kvmsandbox");
    }
    {
        EnvVar x("XDG_RUNTIME_DIR", nullptr);
        EXPECT_EQ(instance_dir().value(), home + "/.kvmsandbox");
        struct stat st {};
        ASSERT_EQ(::stat((home + "/.kvmsandbox").c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 07777, 0700u);
        EnvVar no_home("HOME", nullptr);
        EXPECT_FALSE(instance_dir());
    }
}

TEST_F(ControlInstanceDir, ListReportsLiveAndRemovesStaleSockets) {
    EXPECT_TRUE(list_instances(dir_).value().empty());
    UniqueFd live_b = bind_socket(dir_ + "/b.sock");
    UniqueFd live_a = bind_socket(dir_ + "/a.sock");
    // Bound and closed without unlinking: what a crashed instance leaves.
    bind_socket(dir_ + "/dead.sock").reset();
    ASSERT_TRUE(fs::exists(dir_ + "/dead.sock"));
    // Not ours to judge: a regular file and a name we would never give.
    std::ofstream(dir_ + "/file.sock") << "x";
    bind_socket(dir_ + "/.hidden.sock").reset();

    auto names = list_instances(dir_);
    ASSERT_TRUE(names) << names.error().message;
    EXPECT_EQ(*names, (std::vector<std::string>{"a", "b"}));
    EXPECT_FALSE(fs::exists(dir_ + "/dead.sock"));
    EXPECT_FALSE(fs::exists(dir_ + "/dead.lock"));
    EXPECT_TRUE(fs::exists(dir_ + "/file.sock"));
    EXPECT_TRUE(fs::exists(dir_ + "/.hidden.sock"));
    EXPECT_TRUE(fs::exists(dir_ + "/a.sock"));

    live_a.reset();
    EXPECT_EQ(list_instances(dir_).value(), std::vector<std::string>{"b"});
    EXPECT_FALSE(fs::exists(dir_ + "/a.sock"));
}

TEST_F(ControlInstanceDir, ListKeepsDeadSocketWhileNameIsHeld) {
    auto claim = claim_instance(dir_, "starting");
    ASSERT_TRUE(claim) << claim.error().message;
    // Bound, not yet listening: its owner is alive and holds the lock.
    UniqueFd fd = bind_socket(claim->socket_path(), false);
    EXPECT_EQ(list_instances(dir_).value(), std::vector<std::string>{"starting"});
    EXPECT_TRUE(fs::exists(claim->socket_path()));
}

TEST_F(ControlInstanceDir, ListRemovesLeftoverLockFiles) {
    std::ofstream(dir_ + "/gone.lock") << "";
    EXPECT_TRUE(list_instances(dir_).value().empty());
    EXPECT_FALSE(fs::exists(dir_ + "/gone.lock"));
}

TEST_F(ControlInstanceDir, ListFailsOnMissingDir) {
    EXPECT_FALSE(list_instances(root_ + "/missing"));
}

TEST_F(ControlInstanceDir, ClaimIsExclusiveUntilReleased) {
    {
        auto first = claim_instance(dir_, "web");
        ASSERT_TRUE(first) << first.error().message;
        EXPECT_EQ(first->name(), "web");
        EXPECT_EQ(first->socket_path(), dir_ + "/web.sock");
        EXPECT_TRUE(fs::exists(dir_ + "/web.lock"));
        auto second = claim_instance(dir_, "web");
        ASSERT_FALSE(second);
        EXPECT_EQ(second.error().message, "an instance named web is already running");
        // Moving the claim keeps it held.
        InstanceClaim moved = std::move(*first);
        EXPECT_FALSE(claim_instance(dir_, "web"));
    }
    EXPECT_FALSE(fs::exists(dir_ + "/web.lock"));
    EXPECT_TRUE(claim_instance(dir_, "web"));
}

TEST_F(ControlInstanceDir, ClaimRemovesStaleSocket) {
    bind_socket(dir_ + "/web.sock").reset();
    auto claim = claim_instance(dir_, "web");
    ASSERT_TRUE(claim) << claim.error().message;
    EXPECT_FALSE(fs::exists(dir_ + "/web.sock"));
}

TEST_F(ControlInstanceDir, ClaimRefusesLiveSocket) {
    UniqueFd live = bind_socket(dir_ + "/web.sock");
    auto claim = claim_instance(dir_, "web");
    ASSERT_FALSE(claim);
    EXPECT_EQ(claim.error().message, "an instance named web is already running");
    EXPECT_TRUE(fs::exists(dir_ + "/web.sock"));
    EXPECT_FALSE(fs::exists(dir_ + "/web.lock"));
}

TEST_F(ControlInstanceDir, ClaimRefusesNonSocketAndBadName) {
    std::ofstream(dir_ + "/web.sock") << "x";
    auto claim = claim_instance(dir_, "web");
    ASSERT_FALSE(claim);
    EXPECT_NE(claim.error().message.find("not a socket"), std::string::npos);
    EXPECT_FALSE(claim_instance(dir_, "../escape"));
    EXPECT_FALSE(fs::exists(root_ + "/escape.lock"));
}

TEST_F(ControlInstanceDir, ClaimUniqueGivesFreshNames) {
    auto a = claim_unique_instance(dir_);
    auto b = claim_unique_instance(dir_);
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->name(), b->name());
    EXPECT_EQ(a->name().substr(0, 3), "vm-");
    EXPECT_TRUE(fs::exists(dir_ + "/" + a->name() + ".lock"));
}

}  // namespace
}  // namespace kvmsandbox::control
