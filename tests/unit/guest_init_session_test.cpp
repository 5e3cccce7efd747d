// CMD's start and supervision as guest-init runs them, on the host: pipes and
// socketpairs stand in for the virtio ports. Needs root (CMD's identity is
// set with setgroups/setgid/setuid, which only root may call).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

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

// ---- the wall clock (protocol/guest_protocol.h, 4.) ----

namespace {

struct SocketPair {
    UniqueFd a, b;
    SocketPair() {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0) {
            a.reset(sv[0]);
            b.reset(sv[1]);
        }
    }
};

struct FakeClock {
    std::vector<timespec> set;
    int result = 0;
    SetClock fn() {
        return [this](const timespec& ts) {
            set.push_back(ts);
            return result;
        };
    }
};

std::string read_some(int fd) {
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

TEST(GuestInitControlLines, ReassemblesAndDropsOverlongLines) {
    ControlLines l;
    EXPECT_TRUE(l.feed("sig").empty());
    EXPECT_EQ(l.feed("nal 1\nwinsize 2 3\nti"),
              (std::vector<std::string>{"signal 1", "winsize 2 3"}));
    EXPECT_EQ(l.partial(), "ti");
    std::string huge(ControlLines::kMaxLine + 10, 'x');
    EXPECT_EQ(l.feed("me 1 2\n" + huge + "\ntime 3 4\n"),
              (std::vector<std::string>{"time 1 2", "time 3 4"}));
}

TEST(GuestInitTimeLine, ValidLineSetsTheClock) {
    FakeClock clock;
    EXPECT_TRUE(handle_time_line("time 1700000000 123456789", clock.fn()));
    ASSERT_EQ(clock.set.size(), 1u);
    EXPECT_EQ(clock.set[0].tv_sec, 1700000000);
    EXPECT_EQ(clock.set[0].tv_nsec, 123456789);
    clock.result = EPERM;  // a failure is reported, not fatal
    EXPECT_TRUE(handle_time_line("time 1 0", clock.fn()));
    EXPECT_EQ(clock.set.size(), 2u);
}

TEST(GuestInitTimeLine, OutOfRangeOrMalformedIsIgnored) {
    FakeClock clock;
    for (const char* bad :
         {"time 1 1000000000", "time -1 0", "time 1 -1", "time 253402300800 0", "time 1",
          "time 1 2 3", "time  1 2", "time 1 2x", "time 0x10 0", "time 99999999999999999999 0"})
        EXPECT_TRUE(handle_time_line(bad, clock.fn())) << bad;  // ours, but not obeyed
    EXPECT_TRUE(clock.set.empty());
    // Not time lines at all: left to the other commands.
    EXPECT_FALSE(handle_time_line("signal 15", clock.fn()));
    EXPECT_FALSE(handle_time_line("timex 1 2", clock.fn()));
    EXPECT_FALSE(handle_time_line("time", clock.fn()));
}

TEST(GuestInitSyncClock, AsksThenSetsAndKeepsOtherLines) {
    SocketPair status, control;
    ASSERT_TRUE(status.a && control.a);
    // What the host sent: a signal before CMD exists, the answer, a partial.
    const std::string sent = "signal 2\ntime 1700000001 5\nwinsize 3 4\nsig";
    ASSERT_EQ(write(control.b.get(), sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
    FakeClock clock;
    std::string backlog;
    EXPECT_TRUE(sync_clock(status.a.get(), control.a.get(), 2000, clock.fn(), &backlog));
    EXPECT_EQ(read_some(status.b.get()), "time?\n");
    ASSERT_EQ(clock.set.size(), 1u);
    EXPECT_EQ(clock.set[0].tv_sec, 1700000001);
    EXPECT_EQ(clock.set[0].tv_nsec, 5);
    EXPECT_EQ(backlog, "signal 2\nwinsize 3 4\nsig");
}

TEST(GuestInitSyncClock, NoOrBadAnswerTimesOutAndLeavesTheClock) {
    SocketPair status, control;
    ASSERT_TRUE(status.a && control.a);
    const std::string sent = "time 1 1000000000\n";
    ASSERT_EQ(write(control.b.get(), sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
    FakeClock clock;
    std::string backlog;
    EXPECT_FALSE(sync_clock(status.a.get(), control.a.get(), 100, clock.fn(), &backlog));
    EXPECT_TRUE(clock.set.empty());
    EXPECT_EQ(backlog, "");
    EXPECT_EQ(read_some(status.b.get()), "time?\n");
    // No port: nothing to ask.
    EXPECT_FALSE(sync_clock(-1, control.a.get(), 100, clock.fn(), &backlog));
}

TEST(GuestInitSyncClock, AnswerArrivingLaterIsWaitedFor) {
    SocketPair status, control;
    ASSERT_TRUE(status.a && control.a);
    FakeClock clock;
    std::string backlog;
    // The host answers once it has read the request, as the real one does.
    std::thread host([&] {
        pollfd pfd{status.b.get(), POLLIN, 0};
        poll(&pfd, 1, 2000);
        if (read_some(status.b.get()) == "time?\n") {
            (void)!write(control.b.get(), "time 1700", 9);
            usleep(20000);
            (void)!write(control.b.get(), "000002 7\n", 9);
        }
    });
    EXPECT_TRUE(sync_clock(status.a.get(), control.a.get(), 2000, clock.fn(), &backlog));
    host.join();
    ASSERT_EQ(clock.set.size(), 1u);
    EXPECT_EQ(clock.set[0].tv_sec, 1700000002);
    EXPECT_EQ(clock.set[0].tv_nsec, 7);
}

TEST_F(GuestInitSession, SuperviseObeysTheBacklogAndTimeLines) {
    Pipe p;
    SocketPair control;
    ASSERT_TRUE(control.a);
    cfg_.argv = {"sh", "-c", "sleep 30 & wait"};
    ChildStdio io{p.r.get(), p.w.get(), p.w.get(), -1};
    auto s = spawn_command(cfg_, io);
    ASSERT_TRUE(s);
    ASSERT_FALSE(s->failure);
    // The backlog's partial line completes with what the port holds; a time
    // line on the port (as after a resume) is obeyed while CMD runs.
    const std::string sent = "nal 28\ntime 1700000004 0\nsignal 15\n";
    ASSERT_EQ(write(control.b.get(), sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
    FakeClock clock;
    SessionFds fds;
    fds.signal_fd = sigfd_.get();
    fds.control = control.a.get();
    fds.control_backlog = "time 1700000003 9\nsig";
    fds.set_clock = clock.fn();
    int st = supervise(s->pid, fds, nullptr);
    EXPECT_EQ(status_line_for_wait(st), "signal 15\n");
    ASSERT_EQ(clock.set.size(), 2u);
    EXPECT_EQ(clock.set[0].tv_sec, 1700000003);
    EXPECT_EQ(clock.set[0].tv_nsec, 9);
    EXPECT_EQ(clock.set[1].tv_sec, 1700000004);
    while (waitpid(-1, nullptr, 0) > 0) {
    }
}
