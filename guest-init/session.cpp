#include "guest-init/session.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <vector>

#include "guest-init/io.h"
#include "guest-init/log.h"
#include "protocol/guest_protocol.h"

namespace kvmsandbox::guest_init {

namespace {

// In the child after fork: tells the parent why CMD cannot run, then exits
// with the code the parent will report anyway.
[[noreturn]] void child_fail(int pipe_fd, const ExecFailure& f) {
    std::string msg = std::to_string(f.code) + " " + f.message;
    write_all(pipe_fd, msg);
    _exit(f.code);
}

void reset_signals() {
    // PID 1 blocks SIGCHLD for its signalfd; CMD must start with the
    // defaults a login shell would give it.
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s) ::sigaction(s, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

bool set_stdio(const ChildStdio& io) {
    if (io.pty_slave >= 0) {
        for (int fd = 0; fd < 3; ++fd)
            if (::dup2(io.pty_slave, fd) < 0) return false;
        // After setsid(): the pty becomes the session's controlling terminal.
        return ::ioctl(0, TIOCSCTTY, 0) == 0;
    }
    return ::dup2(io.in, 0) >= 0 && ::dup2(io.out, 1) >= 0 && ::dup2(io.err, 2) >= 0;
}

}  // namespace

std::expected<Pty, std::string> open_pty(unsigned short rows, unsigned short cols) {
    // The devpts mounted at /dev/pts has its own ptmx (ptmxmode=0666), which
    // avoids depending on how /dev/ptmx finds its instance.
    Pty p;
    p.master.reset(::open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
    if (!p.master) return std::unexpected(errno_message("cannot open /dev/pts/ptmx", errno));
    int unlock = 0;
    if (::ioctl(p.master.get(), TIOCSPTLCK, &unlock) != 0)
        return std::unexpected(errno_message("cannot unlock the pty", errno));
    p.slave.reset(::ioctl(p.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!p.slave) return std::unexpected(errno_message("cannot open the pty slave", errno));
    winsize ws{};
    ws.ws_row = rows;
    ws.ws_col = cols;
    if (::ioctl(p.master.get(), TIOCSWINSZ, &ws) != 0)
        return std::unexpected(errno_message("cannot set the window size", errno));
    return p;
}

std::expected<Spawned, std::string> spawn_command(const GuestConfig& cfg, const ChildStdio& io) {
    // Everything the child needs is prepared before fork.
    std::vector<char*> argv = c_string_array(cfg.argv);
    std::vector<char*> envp = c_string_array(cfg.env);
    const std::string* path_kv = env_value(cfg.env, "PATH");
    std::string path = path_kv ? path_kv->substr(5) : std::string(kDefaultPath);
    const std::string cwd_msg = "cannot enter " + cfg.cwd;

    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return std::unexpected(errno_message("pipe", errno));
    UniqueFd rd(p[0]), wr(p[1]);

    pid_t pid = ::fork();
    if (pid < 0) return std::unexpected(errno_message("fork", errno));
    if (pid == 0) {
        reset_signals();
        int w = wr.get();
        if (::setsid() < 0) child_fail(w, {125, errno_message("setsid", errno)});
        if (!set_stdio(io)) child_fail(w, {125, errno_message("cannot set up stdio", errno)});
        if (io.pty_slave >= 0) {
            // Like login: the terminal belongs to the user it serves, so
            // tools that check or reopen it (mesg, ssh, sudo) work.
            if (::fchown(0, cfg.uid, static_cast<gid_t>(-1)) != 0)
                child_fail(w, {125, errno_message("cannot chown the pty", errno)});
        }
        if (::setgroups(cfg.groups.size(), cfg.groups.data()) != 0)
            child_fail(w, {125, errno_message("setgroups", errno)});
        if (::setgid(cfg.gid) != 0) child_fail(w, {125, errno_message("setgid", errno)});
        if (::setuid(cfg.uid) != 0) child_fail(w, {125, errno_message("setuid", errno)});
        ::umask(cfg.umask);
        if (::chdir(cfg.cwd.c_str()) != 0) child_fail(w, {125, errno_message(cwd_msg, errno)});
        int err = exec_search(cfg.argv[0], path, argv.data(), envp.data());
        child_fail(w, map_exec_error(err, cfg.argv[0]));
    }
    wr.reset();

    // EOF without data: the exec succeeded (the pipe was close-on-exec).
    std::string report;
    char buf[512];
    for (;;) {
        ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        report.append(buf, static_cast<size_t>(n));
    }
    Spawned s;
    s.pid = pid;
    if (!report.empty()) {
        size_t sp = report.find(' ');
        ExecFailure f{125, report};
        if (sp != std::string::npos) {
            f.code = std::atoi(report.substr(0, sp).c_str());
            f.message = report.substr(sp + 1);
        }
        s.failure = std::move(f);
    }
    return s;
}

std::vector<std::string> ControlLines::feed(std::string_view bytes) {
    std::vector<std::string> out;
    for (char c : bytes) {
        if (c == '\n') {
            if (!overflow_) out.push_back(std::move(line_));
            line_.clear();
            overflow_ = false;
        } else if (line_.size() < kMaxLine) {
            line_.push_back(c);
        } else {
            overflow_ = true;
        }
    }
    return out;
}

bool handle_time_line(std::string_view line, const SetClock& set_clock) {
    if (!line.starts_with("time ")) return false;
    auto t = guest::parse_time_line(line);
    if (!t) {
        debugf("control: malformed time line ignored");
        return true;
    }
    if (!set_clock) return true;
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(t->sec);
    ts.tv_nsec = static_cast<long>(t->nsec);
    if (int err = set_clock(ts); err != 0)
        errorf("%s", errno_message("cannot set the clock", err).c_str());
    return true;
}

bool sync_clock(int status_fd, int control_fd, int timeout_ms, const SetClock& set_clock,
                std::string* backlog) {
    if (status_fd < 0 || control_fd < 0) return false;
    const long long start = monotonic_ms();
    std::string req(guest::kTimeRequest);
    req.push_back('\n');
    if (!write_all_deadline(status_fd, req.data(), req.size(), timeout_ms)) return false;
    ControlLines lines;
    bool done = false;
    while (!done) {
        long long left = start + timeout_ms - monotonic_ms();
        if (left <= 0) break;
        pollfd pfd{control_fd, POLLIN, 0};
        int r = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 50)));
        if (r < 0 && errno != EINTR) break;
        char buf[512];
        ssize_t n = ::read(control_fd, buf, sizeof buf);
        if (n < 0 && errno != EAGAIN && errno != EINTR) break;
        // EOF: the host has the port closed for now; poll() cannot wait for
        // it to open, so the loop polls every 50 ms (above) at worst.
        if (n == 0 && r > 0) sleep_ms(10);
        if (n <= 0) continue;
        for (auto& l : lines.feed(std::string_view(buf, static_cast<size_t>(n)))) {
            if (!done && guest::parse_time_line(l)) {
                handle_time_line(l, set_clock);
                done = true;
            } else if (!handle_time_line(l, nullptr)) {
                backlog->append(l);
                backlog->push_back('\n');
            }
        }
    }
    backlog->append(lines.partial());
    if (done)
        debugf("clock set from the host's after %lld ms", monotonic_ms() - start);
    else
        debugf("no time from the host within %d ms: the clock stays at the RTC's", timeout_ms);
    return done;
}

namespace {

// A bounded byte queue between two fds; the pump never holds more than this.
struct ByteQueue {
    static constexpr size_t kCap = size_t{64} * 1024;
    std::string data;
    size_t head = 0;
    size_t size() const { return data.size() - head; }
    bool full() const { return size() >= kCap; }
    bool empty() const { return size() == 0; }
    // read() into the free space; returns read's result.
    ssize_t fill_from(int fd) {
        if (head > 0 && head == data.size()) {
            data.clear();
            head = 0;
        }
        size_t room = kCap - size();
        size_t old = data.size();
        data.resize(old + room);
        ssize_t n = ::read(fd, data.data() + old, room);
        data.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
        return n;
    }
    ssize_t drain_to(int fd) {
        ssize_t n = ::write(fd, data.data() + head, size());
        if (n > 0) head += static_cast<size_t>(n);
        if (head == data.size()) {
            data.clear();
            head = 0;
        }
        return n;
    }
    std::string take() { return data.substr(head); }
};

class Loop {
  public:
    Loop(pid_t main, const SessionFds& fds) : main_(main), fds_(fds) {}

    int run(std::string* pending_output) {
        ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        watch(fds_.signal_fd, EPOLLIN);
        if (fds_.control >= 0) watch(fds_.control, EPOLLIN);
        if (!fds_.control_backlog.empty()) control_bytes(fds_.control_backlog);
        update_pump();
        while (!main_done_) {
            epoll_event evs[8];
            // While the control port is closed by the host, poll it now and
            // then: a closed virtio port reads as EOF and cannot be waited on.
            int timeout = control_closed_ ? 250 : -1;
            int n = ::epoll_wait(ep_.get(), evs, 8, timeout);
            if (n < 0 && errno != EINTR) {
                errorf("epoll_wait: %s", strerror(errno));
                sleep_ms(100);
                continue;
            }
            if (n <= 0 && control_closed_) read_control();
            for (int i = 0; i < n; ++i) {
                int fd = evs[i].data.fd;
                if (fd == fds_.signal_fd) {
                    drain_signalfd();
                    reap();
                } else if (fd == fds_.control) {
                    read_control();
                } else if (fd == fds_.tty_port || fd == fds_.pty_master) {
                    pump(fd, evs[i].events);
                }
            }
            update_pump();
        }
        if (pending_output) *pending_output = to_port_.take();
        return status_;
    }

  private:
    void watch(int fd, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        ::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev);
    }
    // Keeps FD's epoll interest at EVENTS; 0 means not registered at all
    // (a registered fd would still wake us for EPOLLHUP forever).
    void set_interest(int fd, uint32_t events, uint32_t& current) {
        if (events == current) return;
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        if (current == 0)
            ::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev);
        else if (events == 0)
            ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr);
        else
            ::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, fd, &ev);
        current = events;
    }

    void drain_signalfd() {
        signalfd_siginfo si{};
        while (::read(fds_.signal_fd, &si, sizeof si) == sizeof si) {
        }
    }

    void reap() {
        for (;;) {
            int st = 0;
            pid_t p = ::waitpid(-1, &st, WNOHANG);
            if (p <= 0) break;
            if (p == main_) {
                status_ = st;
                main_done_ = true;
            }
        }
    }

    void read_control() {
        char buf[512];
        for (;;) {
            ssize_t n = ::read(fds_.control, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) {
                if (!control_closed_) {
                    ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fds_.control, nullptr);
                    control_closed_ = true;
                }
                return;
            }
            if (n < 0) return;  // EAGAIN: all read
            if (control_closed_) {
                watch(fds_.control, EPOLLIN);
                control_closed_ = false;
            }
            control_bytes(std::string_view(buf, static_cast<size_t>(n)));
        }
    }

    void control_bytes(std::string_view bytes) {
        for (const auto& l : lines_.feed(bytes)) control_command(l);
    }

    void control_command(const std::string& line) {
        unsigned a = 0, b = 0;
        char tail = 0;
        if (handle_time_line(line, fds_.set_clock)) {
            debugf("control: time");
        } else if (std::sscanf(line.c_str(), "signal %u%c", &a, &tail) == 1) {
            if (a >= 1 && a < static_cast<unsigned>(NSIG)) {
                debugf("control: signal %u to process group %d", a, main_);
                ::kill(-main_, static_cast<int>(a));
            }
        } else if (std::sscanf(line.c_str(), "winsize %u %u%c", &a, &b, &tail) == 2) {
            if (fds_.pty_master >= 0 && a <= 0xffff && b <= 0xffff) {
                winsize ws{};
                ws.ws_row = static_cast<unsigned short>(a);
                ws.ws_col = static_cast<unsigned short>(b);
                ::ioctl(fds_.pty_master, TIOCSWINSZ, &ws);  // also SIGWINCH to the foreground
            }
        } else {
            debugf("control: unknown command ignored");
        }
    }

    void update_pump() {
        if (fds_.tty_port < 0 || fds_.pty_master < 0) return;
        uint32_t port = 0, master = 0;
        if (!port_eof_ && !to_master_.full()) port |= EPOLLIN;
        if (!to_port_.empty() && !port_broken_) port |= EPOLLOUT;
        if (!master_eof_ && !to_port_.full()) master |= EPOLLIN;
        if (!to_master_.empty() && !master_eof_) master |= EPOLLOUT;
        set_interest(fds_.tty_port, port, port_events_);
        set_interest(fds_.pty_master, master, master_events_);
    }

    void pump(int fd, uint32_t events) {
        bool readable = events & (EPOLLIN | EPOLLHUP | EPOLLERR);
        bool writable = events & (EPOLLOUT | EPOLLERR);
        if (fd == fds_.tty_port) {
            if (readable && !port_eof_ && !to_master_.full()) {
                ssize_t n = to_master_.fill_from(fd);
                // The host closed the terminal's input; output still flows.
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) port_eof_ = true;
            }
            if (writable && !to_port_.empty()) {
                ssize_t n = to_port_.drain_to(fd);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                    // Nobody to show it to: drop output rather than stall CMD.
                    port_broken_ = true;
                    to_port_.take();
                    to_port_ = ByteQueue{};
                }
            }
        } else {
            if (readable && !master_eof_ && !to_port_.full()) {
                ssize_t n = to_port_.fill_from(fd);
                // EIO: every slave fd is closed (CMD and its children exited).
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) master_eof_ = true;
                if (port_broken_) to_port_ = ByteQueue{};
            }
            if (writable && !to_master_.empty()) {
                ssize_t n = to_master_.drain_to(fd);
                if (n < 0 && errno != EAGAIN && errno != EINTR) to_master_ = ByteQueue{};
            }
        }
    }

    pid_t main_;
    SessionFds fds_;
    UniqueFd ep_;
    bool main_done_ = false;
    int status_ = 0;
    bool control_closed_ = false;
    ControlLines lines_;
    ByteQueue to_master_, to_port_;
    uint32_t port_events_ = 0, master_events_ = 0;
    bool port_eof_ = false, master_eof_ = false, port_broken_ = false;
};

}  // namespace

int supervise(pid_t main, const SessionFds& fds, std::string* pending_output) {
    Loop loop(main, fds);
    return loop.run(pending_output);
}

void finish_session(const SessionFds& fds, std::string pending_output) {
    // Whatever CMD left running (daemons, background jobs) dies with it, as
    // the VM is about to go away anyway.
    ::kill(-1, SIGKILL);
    long long deadline = monotonic_ms() + 5000;
    for (;;) {
        pid_t p = ::waitpid(-1, nullptr, WNOHANG);
        if (p > 0) continue;
        if (p < 0 && errno == ECHILD) break;
        if (monotonic_ms() >= deadline) {
            errorf("some processes did not die after SIGKILL");
            break;
        }
        sleep_ms(10);
    }
    drain_pty(fds, std::move(pending_output));
}

void drain_pty(const SessionFds& fds, std::string pending_output) {
    if (fds.tty_port < 0 || fds.pty_master < 0) return;
    // Every slave is closed now: read what the pty still holds until EIO.
    std::string out = std::move(pending_output);
    char buf[16384];
    for (;;) {
        pollfd pfd{fds.pty_master, POLLIN, 0};
        if (::poll(&pfd, 1, 500) <= 0) break;
        ssize_t n = ::read(fds.pty_master, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > (16u << 20)) break;  // bounded, whatever happens
    }
    if (!out.empty() && !write_all_deadline(fds.tty_port, out.data(), out.size(), 5000))
        errorf("could not deliver the terminal's last output");
}

}  // namespace kvmsandbox::guest_init
