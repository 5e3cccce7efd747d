#include "sandbox/session.h"

#include <limits.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <deque>
#include <functional>

#include "base/log.h"
#include "base/milestones.h"
#include "protocol/guest_protocol.h"

namespace kvmsandbox {

namespace {

// Writes every byte of `bufs` to fd, waiting when the fd is non-blocking and
// full. Returns false when the reader went away (the bytes are dropped, as a
// local command writing to a closed pipe would lose them).
bool write_all(int fd, std::span<const std::span<uint8_t>> bufs) {
    for (const auto& b : bufs) {
        size_t off = 0;
        while (off < b.size()) {
            ssize_t n = ::write(fd, b.data() + off, b.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) {
                pollfd p{fd, POLLOUT, 0};
                ::poll(&p, 1, 1000);
                continue;
            }
            if (n <= 0) return false;
            off += static_cast<size_t>(n);
        }
    }
    return true;
}

bool parse_int(std::string_view s, int& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::optional<SessionStatus> parse_status_line(const std::string& line) {
    std::string_view l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.remove_suffix(1);
    auto sp = l.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    std::string_view kind = l.substr(0, sp), rest = l.substr(sp + 1);
    int n = 0;
    if (kind == "exit") {
        if (!parse_int(rest, n) || n < 0 || n > 255) return std::nullopt;
        return SessionStatus{n, ""};
    }
    if (kind == "signal") {
        if (!parse_int(rest, n) || n < 1 || n > 64) return std::nullopt;
        return SessionStatus{128 + n, ""};
    }
    if (kind == "error") {
        auto sp2 = rest.find(' ');
        std::string_view code = rest.substr(0, sp2);
        if (!parse_int(code, n) || n < 1 || n > 255) return std::nullopt;
        return SessionStatus{
            n, sp2 == std::string_view::npos ? "" : std::string(rest.substr(sp2 + 1))};
    }
    return std::nullopt;
}

std::optional<std::pair<uint64_t, uint64_t>> parse_phase_line(const std::string& line) {
    std::string_view l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.remove_suffix(1);
    constexpr std::string_view kInit = "phase init=", kCmd = " cmd=";
    if (!l.starts_with(kInit)) return std::nullopt;
    l.remove_prefix(kInit.size());
    auto sp = l.find(kCmd);
    if (sp == std::string_view::npos) return std::nullopt;
    uint64_t init = 0, cmd = 0;
    std::string_view a = l.substr(0, sp), b = l.substr(sp + kCmd.size());
    auto r1 = std::from_chars(a.data(), a.data() + a.size(), init);
    auto r2 = std::from_chars(b.data(), b.data() + b.size(), cmd);
    if (r1.ec != std::errc() || r1.ptr != a.data() + a.size() || r2.ec != std::errc() ||
        r2.ptr != b.data() + b.size() || a.empty() || b.empty() || cmd < init)
        return std::nullopt;
    return std::pair{init, cmd};
}

// Host fd -> guest port. Pollable fds (pipes, terminals, sockets) are read
// once per readiness event, so a read never blocks the loop; regular files
// (which epoll refuses) are read whenever the guest has buffers.
class SandboxSession::InputPort : public ConsolePortBackend {
  public:
    InputPort(EventLoop& loop, int fd) : loop_(loop), fd_(fd) {}
    ~InputPort() override {
        if (watching_) loop_.remove(fd_);
    }
    void attach(VirtioConsole& c, uint32_t port) {
        console_ = &c;
        port_ = port;
        if (fd_ < 0) {
            eof_ = true;
            if (close_on_eof_) c.set_host_open(port, false);
            return;
        }
        auto r = loop_.add(fd_, 0, [this](uint32_t ev) { on_readable(ev); });
        watching_ = static_cast<bool>(r);
    }
    void on_guest_output(std::span<const std::span<uint8_t>> data) override {
        if (out_fd_ >= 0) write_all(out_fd_, data);  // terminal echo and CMD output
    }
    void on_guest_open(bool open) override {
        log::debug("stdin port {}: guest {}", port_, open ? "opened" : "closed");
        guest_open_ = open;
        if (open) pump();
    }
    void on_rx_space() override {
        log::debug("stdin port {}: rx space (open {}, watching {})", port_, guest_open_, watching_);
        pump();
    }
    // A terminal port carries CMD's output too: closing it at the end of our
    // input would block CMD's writes, so a terminal's end of input only stops
    // the reading.
    void set_output(int fd) {
        out_fd_ = fd;
        close_on_eof_ = false;
    }

  private:
    void finish() {
        eof_ = true;
        if (watching_) {
            loop_.remove(fd_);
            watching_ = false;
        }
        if (close_on_eof_) console_->set_host_open(port_, false);
    }
    // Delivers what can go now; returns with EPOLLIN armed only while the
    // guest has room, so host memory use stays bounded by the guest buffers.
    void pump() {
        if (eof_ || !console_ || !guest_open_) return;
        if (watching_) {
            (void)loop_.modify(fd_, console_->can_deliver(port_) ? uint32_t{EPOLLIN} : 0u);
            return;
        }
        while (!eof_ && console_->can_deliver(port_)) {
            if (read_once() == 0) break;
        }
    }
    size_t read_once() {
        bool end = false;
        bool read = false;
        size_t n = console_->deliver(port_, [&](std::span<const std::span<uint8_t>> bufs) {
            // One read per call: our stdin may be a blocking fd (a terminal,
            // a pipe) that epoll said holds some data, not how much; a second
            // read could block the whole loop.
            if (read) return ssize_t{0};
            read = true;
            iovec iov[64];
            size_t cnt = std::min<size_t>(bufs.size(), 64);
            for (size_t i = 0; i < cnt; ++i) iov[i] = {bufs[i].data(), bufs[i].size()};
            ssize_t r;
            do {
                r = ::readv(fd_, iov, static_cast<int>(cnt));
            } while (r < 0 && errno == EINTR);
            if (r > 0) return r;
            if (r < 0 && errno == EAGAIN) return ssize_t{0};
            end = true;  // EOF or a read error: the guest sees end of file
            return ssize_t{-1};
        });
        if (end) finish();
        return end ? 0 : n;
    }
    void on_readable(uint32_t ev) {
        log::debug("stdin readable {:#x}", ev);
        if (eof_) return;
        if ((ev & (EPOLLHUP | EPOLLERR)) && !console_->can_deliver(port_)) {
            // epoll reports a hang-up even with no events asked for; stop
            // watching and read what is left once the guest has room (a
            // hung-up fd never blocks a read).
            loop_.remove(fd_);
            watching_ = false;
            return;
        }
        read_once();
        pump();
    }

    EventLoop& loop_;
    int fd_;
    int out_fd_ = -1;
    VirtioConsole* console_ = nullptr;
    uint32_t port_ = 0;
    bool watching_ = false;
    bool guest_open_ = false;
    bool eof_ = false;
    bool close_on_eof_ = true;
};

// Guest port -> host fd. Never waits for a slow reader while the VM runs:
// what our reader has no room for stays in the guest's queue (CMD's writes
// block in the guest, as on a full pipe) and the port resumes when the fd is
// writable, so the loop keeps serving signals, timers, the control socket and
// the other devices meanwhile. Host memory holds none of the backlog.
class SandboxSession::OutputPort : public ConsolePortBackend {
  public:
    // on_broken: our reader went away (EPIPE).
    OutputPort(EventLoop& loop, int fd, std::function<void()> on_broken)
        : loop_(loop), fd_(fd), on_broken_(std::move(on_broken)) {
        struct stat st {};
        // Pipes, sockets and terminals may wait for a reader. Files, block
        // devices and other character devices (/dev/null) do not, and are
        // written plainly: epoll refuses files, and /dev/null knows no
        // RWF_NOWAIT (the poll fallback would cut its writes to PIPE_BUF).
        pollable_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 &&
                    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ||
                     (S_ISCHR(st.st_mode) && ::isatty(fd_)));
        nowait_ = pollable_;
    }
    ~OutputPort() override {
        if (watching_) loop_.remove(fd_);
    }
    void attach(VirtioConsole& c, uint32_t port) {
        console_ = &c;
        port_ = port;
    }
    // The VM has stopped: from now on wait for the reader, so that what the
    // guest wrote is all delivered before we exit.
    void set_blocking() { blocking_ = true; }

    void on_guest_output(std::span<const std::span<uint8_t>> data) override {
        (void)take_guest_output(data);
    }
    size_t take_guest_output(std::span<const std::span<uint8_t>> data) override {
        size_t total = 0;
        for (const auto& b : data) total += b.size();
        if (fd_ < 0 || broken_) return total;
        size_t done = 0, idx = 0, off = 0;  // progress: data[idx], byte off
        while (done < total) {
            iovec iov[kMaxIov];
            int cnt = 0;
            for (size_t i = idx, o = off; i < data.size() && cnt < kMaxIov; ++i, o = 0)
                if (data[i].size() > o) iov[cnt++] = {data[i].data() + o, data[i].size() - o};
            const ssize_t n = write_some(iov, cnt);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) {
                if (!blocking_ && arm_writable()) return done;
                pollfd p{fd_, POLLOUT, 0};
                ::poll(&p, 1, 1000);
                continue;
            }
            if (n <= 0) {
                broken_ = true;
                if (on_broken_) on_broken_();
                return total;  // dropped, as a local writer's bytes would be
            }
            done += static_cast<size_t>(n);
            for (size_t adv = static_cast<size_t>(n); adv > 0;) {
                const size_t avail = data[idx].size() - off;
                if (adv < avail) {
                    off += adv;
                    adv = 0;
                } else {
                    adv -= avail;
                    ++idx;
                    off = 0;
                }
            }
        }
        return total;
    }

  private:
    static constexpr int kMaxIov = 64;

    // One write that does not wait for the reader: -1/EAGAIN when it would.
    ssize_t write_some(const iovec* iov, int cnt) {
        if (!pollable_ || blocking_) return ::writev(fd_, iov, cnt);
        if (nowait_) {
            const ssize_t n = ::pwritev2(fd_, iov, cnt, -1, RWF_NOWAIT);
            if (n >= 0 || errno != EOPNOTSUPP) return n;
            nowait_ = false;  // e.g. a terminal, or a kernel whose pipes lack it
        }
        // poll() saying "writable" guarantees room for PIPE_BUF bytes.
        pollfd p{fd_, POLLOUT, 0};
        if (::poll(&p, 1, 0) == 0) {
            errno = EAGAIN;
            return -1;
        }
        iovec one = iov[0];
        one.iov_len = std::min<size_t>(one.iov_len, PIPE_BUF);
        return ::writev(fd_, &one, 1);
    }
    // Resumes the port once the fd is writable. False when the fd cannot be
    // watched (the caller then waits for it here).
    bool arm_writable() {
        if (!console_ || !pollable_) return false;
        if (!arming_) {
            arming_ = true;
            // Posted: this may run on a vCPU thread, and under the console's lock.
            loop_.post([this] {
                auto r = loop_.add(fd_, EPOLLOUT, [this](uint32_t) {
                    loop_.remove(fd_);
                    watching_ = false;
                    arming_ = false;
                    console_->resume_output(port_);
                });
                if (r) {
                    watching_ = true;
                } else {
                    arming_ = false;
                    set_blocking();  // unwatchable: fall back to waiting
                    console_->resume_output(port_);
                }
            });
        }
        return true;
    }

    EventLoop& loop_;
    int fd_;
    std::function<void()> on_broken_;
    VirtioConsole* console_ = nullptr;
    uint32_t port_ = 0;
    bool pollable_ = false;
    bool nowait_ = false;
    bool blocking_ = false;
    bool broken_ = false;
    std::atomic<bool> arming_{false};  // an EPOLLOUT watch is posted or armed
    bool watching_ = false;
};

class SandboxSession::StatusPort : public ConsolePortBackend {
  public:
    explicit StatusPort(SandboxSession& s) : s_(s) {}
    void on_guest_output(std::span<const std::span<uint8_t>> data) override {
        for (const auto& b : data) {
            for (uint8_t c : b) {
                if (buf_.size() >= kMax) return;  // a status line is short; ignore floods
                buf_.push_back(static_cast<char>(c));
                if (c == '\n') {
                    s_.on_status_line(buf_);
                    buf_.clear();
                }
            }
        }
    }

  private:
    static constexpr size_t kMax = 4096;
    SandboxSession& s_;
    std::string buf_;
};

class SandboxSession::ControlPort : public ConsolePortBackend {
  public:
    void attach(VirtioConsole& c, uint32_t port) {
        console_ = &c;
        port_ = port;
    }
    void on_guest_output(std::span<const std::span<uint8_t>>) override {}
    void on_guest_open(bool open) override {
        open_ = open;
        flush();
    }
    void on_rx_space() override { flush(); }
    void send(std::string line) {
        if (pending_.size() < 64) pending_.push_back(std::move(line));
        flush();
    }

  private:
    void flush() {
        if (!console_ || !open_) return;
        while (!pending_.empty() && console_->can_deliver(port_)) {
            const std::string& msg = pending_.front();
            bool sent = false;
            size_t n = console_->deliver(port_, [&](std::span<const std::span<uint8_t>> bufs) {
                if (sent) return ssize_t{0};  // one line, one buffer
                // Control lines are tiny; one receive buffer (a page) holds one.
                if (bufs.empty() || bufs[0].size() < msg.size()) return ssize_t{-1};
                sent = true;
                std::copy(msg.begin(), msg.end(), bufs[0].begin());
                return static_cast<ssize_t>(msg.size());
            });
            if (n == 0) break;
            pending_.pop_front();
        }
    }
    VirtioConsole* console_ = nullptr;
    uint32_t port_ = 0;
    bool open_ = false;
    std::deque<std::string> pending_;
};

SandboxSession::SandboxSession(EventLoop& loop, int in_fd, int out_fd, int err_fd, bool tty)
    : loop_(loop), tty_(tty) {
    input_ = std::make_unique<InputPort>(loop, in_fd);
    if (tty) {
        input_->set_output(out_fd);
    } else {
        // Run locally, a command writing to a closed pipe dies of SIGPIPE
        // (`kvmsandbox -- yes | head -1` must end); do the same to CMD.
        // (Posted: this runs under the console's lock, which sending takes.)
        auto sigpipe = [this] { loop_.post([this] { send_signal(SIGPIPE); }); };
        out_ = std::make_unique<OutputPort>(loop, out_fd, sigpipe);
        err_ = std::make_unique<OutputPort>(loop, err_fd, sigpipe);
    }
    status_port_ = std::make_unique<StatusPort>(*this);
    control_ = std::make_unique<ControlPort>();
}

SandboxSession::~SandboxSession() = default;

std::vector<ConsolePortSpec> SandboxSession::port_specs() {
    std::vector<ConsolePortSpec> v;
    if (tty_) {
        v.push_back({guest::kPortTty, input_.get()});
    } else {
        v.push_back({guest::kPortStdin, input_.get()});
        v.push_back({guest::kPortStdout, out_.get()});
        v.push_back({guest::kPortStderr, err_.get()});
    }
    v.push_back({guest::kPortStatus, status_port_.get()});
    v.push_back({guest::kPortControl, control_.get()});
    return v;
}

void SandboxSession::attach(VirtioConsole& console) {
    console_ = &console;
    const uint32_t base = tty_ ? 1 : 3;
    input_->attach(console, 0);
    if (out_) out_->attach(console, 1);
    if (err_) err_->attach(console, 2);
    control_->attach(console, base + 1);
}

void SandboxSession::finish_output() {
    if (out_) out_->set_blocking();
    if (err_) err_->set_blocking();
}

void SandboxSession::send_signal(int sig) {
    control_->send("signal " + std::to_string(sig) + "\n");
}

void SandboxSession::send_winsize(unsigned rows, unsigned cols) {
    control_->send("winsize " + std::to_string(rows) + " " + std::to_string(cols) + "\n");
}

void SandboxSession::on_status_line(const std::string& line) {
    if (auto phases = parse_phase_line(line)) {
        milestones::mark(milestones::Milestone::GuestCmdStarted);
        milestones::set_guest_phases(phases->first, phases->second);
        return;
    }
    if (status_) return;  // the first one counts
    milestones::mark(milestones::Milestone::StatusReceived);
    auto st = parse_status_line(line);
    status_ = st ? *st : SessionStatus{125, "malformed status from the guest: " + line};
}

}  // namespace kvmsandbox
