#include "virtio/console/fd_ports.h"

#include <limits.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "base/io.h"
#include "base/log.h"

namespace kvmsandbox {

// ---- FdInputPort ----

FdInputPort::~FdInputPort() {
    if (watching_) loop_.remove(fd_);
}

void FdInputPort::attach(VirtioConsole& c, uint32_t port) {
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

void FdInputPort::on_guest_output(std::span<const std::span<uint8_t>> data) {
    // Terminal echo and CMD output; a reader that went away loses them, as
    // it would locally.
    if (out_fd_ >= 0) (void)write_all(out_fd_, data);
}

void FdInputPort::on_guest_open(bool open) {
    log::debug("stdin port {}: guest {}", port_, open ? "opened" : "closed");
    guest_open_ = open;
    if (open) pump();
}

void FdInputPort::on_rx_space() {
    log::debug("stdin port {}: rx space (open {}, watching {})", port_, guest_open_, watching_);
    pump();
}

void FdInputPort::finish() {
    eof_ = true;
    if (watching_) {
        loop_.remove(fd_);
        watching_ = false;
    }
    if (close_on_eof_) console_->set_host_open(port_, false);
}

// Delivers what can go now; returns with EPOLLIN armed only while the guest
// has room, so host memory use stays bounded by the guest buffers.
void FdInputPort::pump() {
    if (eof_ || !console_ || !guest_open_) return;
    if (watching_) {
        (void)loop_.modify(fd_, console_->can_deliver(port_) ? uint32_t{EPOLLIN} : 0u);
        return;
    }
    while (!eof_ && console_->can_deliver(port_)) {
        if (read_once() == 0) break;
    }
}

size_t FdInputPort::read_once() {
    bool end = false;
    bool read = false;
    size_t n = console_->deliver(port_, [&](std::span<const std::span<uint8_t>> bufs) {
        // One read per call: our stdin may be a blocking fd (a terminal, a
        // pipe) that epoll said holds some data, not how much; a second read
        // could block the whole loop.
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

void FdInputPort::on_readable(uint32_t ev) {
    log::debug("stdin readable {:#x}", ev);
    if (eof_) return;
    if ((ev & (EPOLLHUP | EPOLLERR)) && !console_->can_deliver(port_)) {
        // epoll reports a hang-up even with no events asked for; stop
        // watching and read what is left once the guest has room (a hung-up
        // fd never blocks a read).
        loop_.remove(fd_);
        watching_ = false;
        return;
    }
    read_once();
    pump();
}

// ---- FdOutputPort ----

FdOutputPort::FdOutputPort(EventLoop& loop, int fd, std::function<void()> on_broken)
    : loop_(loop), fd_(fd), on_broken_(std::move(on_broken)) {
    struct stat st {};
    // Pipes, sockets and terminals may wait for a reader. Files, block
    // devices and other character devices (/dev/null) do not, and are
    // written plainly: epoll refuses files, and /dev/null knows no
    // RWF_NOWAIT (the poll fallback would cut its writes to PIPE_BUF).
    pollable_ =
        fd_ >= 0 && ::fstat(fd_, &st) == 0 &&
        (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || (S_ISCHR(st.st_mode) && ::isatty(fd_)));
    nowait_ = pollable_;
}

FdOutputPort::~FdOutputPort() {
    if (watching_) loop_.remove(fd_);
}

size_t FdOutputPort::take_guest_output(std::span<const std::span<uint8_t>> data) {
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

// One write that does not wait for the reader: -1/EAGAIN when it would.
ssize_t FdOutputPort::write_some(const iovec* iov, int cnt) {
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
bool FdOutputPort::arm_writable() {
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

// ---- LineInputPort ----

void LineInputPort::on_guest_output(std::span<const std::span<uint8_t>> data) {
    for (const auto& b : data) {
        for (uint8_t c : b) {
            if (buf_.size() >= kMaxLine) return;  // lines are short; ignore floods
            buf_.push_back(static_cast<char>(c));
            if (c == '\n') {
                on_line_(buf_);
                buf_.clear();
            }
        }
    }
}

// ---- LineOutputPort ----

void LineOutputPort::send(std::string line) {
    if (pending_.size() < kMaxPending) pending_.push_back(std::move(line));
    flush();
}

void LineOutputPort::flush() {
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

}  // namespace kvmsandbox
