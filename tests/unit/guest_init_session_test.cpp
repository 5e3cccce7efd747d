// CMD's start and supervision as guest-init runs them, on the host: pipes and
// socketpairs stand in for the virtio ports. Needs root (CMD's identity is
// set with setgroups/setgid/setuid, which only root may call).
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "base/unique_fd.h"
#include "guest-init/session.h"

using namespace kvmsandbox;
using namespace kvmsandbox::guest_init;

namespace {

class GuestInitSession : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root to set CMD's identity";
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, &old_mask_);
        sigfd_.reset(signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
        ASSERT_TRUE(sigfd_);
        cfg_.uid = 0;
        cfg_.gid = 0;
        cfg_.env = {"PATH=/usr/bin:/bin"};
    }
    void TearDown() override {
        if (geteuid() == 0) sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
    }

    static std::string read_all(int fd) {
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
        return out;
    }

    sigset_t old_mask_{};
    UniqueFd sigfd_;
    GuestConfig cfg_;
};

struct Pipe {
    UniqueFd r, w;
    Pipe() {
        int p[2];
        if (pipe2(p, O_CLOEXEC) == 0) {
            r.reset(p[0]);
            w.reset(p[1]);
        }
    }
};

}  // namespace

TEST_F(GuestInitSession, RunsCommandWithItsStreamsAndExitStatus) {
    Pipe in, out, err;
    cfg_.argv = {"sh", "-c", "read x; echo \"out:$x:$(pwd)\"; echo e >&2; exit 3"};
    cfg_.cwd = "/tmp";
    ChildStdio io{in.r.get(), out.w.get(), err.w.get(), -1};
    auto s = spawn_command(cfg_, io);
    ASSERT_TRUE(s) << s.error();
    ASSERT_FALSE(s->failure) << s->failure.value_or(ExecFailure{}).message;
    in.r.reset();
    out.w.reset();
    err.w.reset();
    ASSERT_EQ(write(in.w.get(), "hello\n", 6), 6);
    in.w.reset();
    SessionFds fds;
    fds.signal_fd = sigfd_.get();
    int st = supervise(s->pid, fds, nullptr);
    EXPECT_EQ(status_line_for_wait(st), "exit 3\n");
    EXPECT_EQ(read_all(out.r.get()), "out:hello:/tmp\n");
    EXPECT_EQ(read_all(err.r.get()), "e\n");
}

TEST_F(GuestInitSession, ReportsExecAndCwdFailures) {
    Pipe p;
    ChildStdio io{p.r.get(), p.w.get(), p.w.get(), -1};
    cfg_.argv = {"no-such-command-kvmsandbox"};
    auto s = spawn_command(cfg_, io);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->failure, std::optional<ExecFailure>(
                              ExecFailure{127, "no-such-command-kvmsandbox: command not found"}));
    waitpid(s->pid, nullptr, 0);

    cfg_.argv = {"true"};
    cfg_.cwd = "/nonexistent-kvmsandbox";
    s = spawn_command(cfg_, io);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->failure,
              std::optional<ExecFailure>(ExecFailure{
                  125, "cannot enter /nonexistent-kvmsandbox: No such file or directory"}));
    waitpid(s->pid, nullptr, 0);
}

TEST_F(GuestInitSession, ControlSignalReachesTheProcessGroup) {
    Pipe p;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    UniqueFd control(sv[0]), host(sv[1]);
    cfg_.argv = {"sh", "-c", "sleep 30 & wait"};
    ChildStdio io{p.r.get(), p.w.get(), p.w.get(), -1};
    auto s = spawn_command(cfg_, io);
    ASSERT_TRUE(s);
    ASSERT_FALSE(s->failure);
    // Split across writes, with junk first: lines are reassembled, junk ignored.
    ASSERT_EQ(write(host.get(), "bogus\nsig", 9), 9);
    ASSERT_EQ(write(host.get(), "nal 15\n", 7), 7);
    SessionFds fds;
    fds.signal_fd = sigfd_.get();
    fds.control = control.get();
    int st = supervise(s->pid, fds, nullptr);
    EXPECT_EQ(status_line_for_wait(st), "signal 15\n");
    while (waitpid(-1, nullptr, 0) > 0) {
    }
}

TEST_F(GuestInitSession, TtyModePumpsThePty) {
    if (access("/dev/pts/ptmx", F_OK) != 0) GTEST_SKIP() << "no /dev/pts/ptmx";
    auto pty = open_pty(33, 101);
    ASSERT_TRUE(pty) << pty.error();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    UniqueFd port(sv[0]), host(sv[1]);
    cfg_.tty = true;
    cfg_.argv = {"sh", "-c", "read x; [ -t 0 ] && echo \"tty:$x:$(stty size)\"; exit 5"};
    ChildStdio io;
    io.pty_slave = pty->slave.get();
    auto s = spawn_command(cfg_, io);
    ASSERT_TRUE(s);
    ASSERT_FALSE(s->failure) << s->failure.value_or(ExecFailure{}).message;
    pty->slave.reset();
    ASSERT_EQ(write(host.get(), "abc\r", 4), 4);  // a terminal sends CR; ICRNL makes it NL
    SessionFds fds;
    fds.signal_fd = sigfd_.get();
    fds.tty_port = port.get();
    fds.pty_master = pty->master.get();
    std::string pending;
    int st = supervise(s->pid, fds, &pending);
    EXPECT_EQ(status_line_for_wait(st), "exit 5\n");
    drain_pty(fds, pending);
    port.reset();
    fcntl(host.get(), F_SETFL, 0);
    std::string out = read_all(host.get());
    // The echo of the input, then the output with ONLCR's CRLF.
    EXPECT_EQ(out, "abc\r\ntty:abc:33 101\r\n");
}
