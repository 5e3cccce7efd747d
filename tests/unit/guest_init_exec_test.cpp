#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "guest-init/exec.h"

using namespace kvmsandbox::guest_init;
namespace fs = std::filesystem;

TEST(GuestInitExec, MapsErrnoToContainerCodes) {
    EXPECT_EQ(map_exec_error(ENOENT, "nope"), (ExecFailure{127, "nope: command not found"}));
    EXPECT_EQ(map_exec_error(ENOENT, "./nope"),
              (ExecFailure{127, "./nope: No such file or directory"}));
    for (int e : {EACCES, ENOEXEC, EISDIR, EPERM, ETXTBSY, ELOOP}) {
        auto f = map_exec_error(e, "x");
        EXPECT_EQ(f.code, 126) << e;
        EXPECT_EQ(f.message, std::string("x: ") + strerror(e));
    }
}

TEST(GuestInitExec, PathCandidates) {
    EXPECT_EQ(path_candidates("ls", "/usr/bin:/bin"),
              (std::vector<std::string>{"/usr/bin/ls", "/bin/ls"}));
    // An empty entry (leading, trailing or doubled colon) is the current directory.
    EXPECT_EQ(path_candidates("ls", ":/bin::/sbin/:"),
              (std::vector<std::string>{"ls", "/bin/ls", "ls", "/sbin/ls", "ls"}));
    EXPECT_EQ(path_candidates("./ls", "/bin"), (std::vector<std::string>{"./ls"}));
    EXPECT_EQ(path_candidates("a/b", ""), (std::vector<std::string>{"a/b"}));
}

TEST(GuestInitExec, EnvValueTakesTheLastDefinition) {
    std::vector<std::string> env = {"PATHX=1", "PATH=/a", "P=2", "PATH=/b"};
    ASSERT_NE(env_value(env, "PATH"), nullptr);
    EXPECT_EQ(*env_value(env, "PATH"), "PATH=/b");
    EXPECT_EQ(env_value(env, "HOME"), nullptr);
}

TEST(GuestInitExec, StatusLines) {
    EXPECT_EQ(status_line_for_wait(0), "exit 0\n");
    EXPECT_EQ(status_line_for_wait(42 << 8), "exit 42\n");
    EXPECT_EQ(status_line_for_wait(255 << 8), "exit 255\n");
    EXPECT_EQ(status_line_for_wait(SIGKILL), "signal 9\n");
    EXPECT_EQ(status_line_for_wait(SIGSEGV | 0x80), "signal 11\n");  // core dumped
    EXPECT_EQ(error_status_line(127, "a\nb: command not found"),
              "error 127 a?b: command not found\n");
}

namespace {

class GuestInitExecSearch : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/guest_init_exec_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        fs::create_directories(dir_ / "a");
        fs::create_directories(dir_ / "b");
    }
    void TearDown() override { fs::remove_all(dir_); }

    void write_file(const fs::path& p, const std::string& content, mode_t mode) {
        std::ofstream(p) << content;
        ASSERT_EQ(chmod(p.c_str(), mode), 0);
    }

    // Runs exec_search in a child as guest-init does; the child exits with
    // the script's status, or with 126/127 from map_exec_error.
    int run(const std::string& file, const std::string& path) {
        pid_t pid = fork();
        if (pid == 0) {
            std::vector<std::string> args = {file};
            std::vector<std::string> env = {"PATH=" + path};
            auto argv = c_string_array(args);
            auto envp = c_string_array(env);
            int err = exec_search(file, path, argv.data(), envp.data());
            _exit(map_exec_error(err, file).code);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }

    fs::path dir_;
};

}  // namespace

TEST_F(GuestInitExecSearch, FindsAnExecutableInPath) {
    write_file(dir_ / "b" / "tool", "#!/bin/sh\nexit 42\n", 0755);
    EXPECT_EQ(run("tool", (dir_ / "a").string() + ":" + (dir_ / "b").string()), 42);
}

TEST_F(GuestInitExecSearch, NotFoundIs127) {
    EXPECT_EQ(run("no-such-tool", (dir_ / "a").string() + ":/nonexistent"), 127);
    EXPECT_EQ(run((dir_ / "a" / "missing").string(), "/bin"), 127);
}

TEST_F(GuestInitExecSearch, NotExecutableIs126) {
    write_file(dir_ / "a" / "tool", "#!/bin/sh\nexit 0\n", 0644);
    EXPECT_EQ(run("tool", (dir_ / "a").string()), 126);
    EXPECT_EQ(run((dir_ / "a" / "tool").string(), ""), 126);
}

TEST_F(GuestInitExecSearch, NotExecutableEarlierInPathIsSkipped) {
    write_file(dir_ / "a" / "tool", "#!/bin/sh\nexit 1\n", 0644);
    write_file(dir_ / "b" / "tool", "#!/bin/sh\nexit 7\n", 0755);
    EXPECT_EQ(run("tool", (dir_ / "a").string() + ":" + (dir_ / "b").string()), 7);
}

TEST_F(GuestInitExecSearch, DirectoryIs126) {
    fs::create_directories(dir_ / "a" / "tool");
    EXPECT_EQ(run("tool", (dir_ / "a").string()), 126);
    EXPECT_EQ(run((dir_ / "a" / "tool").string(), ""), 126);
}

TEST_F(GuestInitExecSearch, BadFormatIs126) {
    write_file(dir_ / "a" / "tool", "not a program\n", 0755);
    EXPECT_EQ(run("tool", (dir_ / "a").string()), 126);
}
