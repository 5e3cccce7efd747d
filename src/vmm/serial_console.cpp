#include "vmm/serial_console.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "base/log.h"

namespace kvmsandbox {

void SerialConsole::write(std::span<const uint8_t> bytes) {
    if (out_fd_ < 0) return;
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::write(out_fd_, bytes.data() + off, bytes.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd p{out_fd_, POLLOUT, 0};
            ::poll(&p, 1, 100);
            continue;
        }
        if (n <= 0) return;  // reader went away: drop console output, keep the VM going
        off += static_cast<size_t>(n);
    }
}

void SerialConsole::feed() {
    while (pending_off_ < pending_.size()) {
        std::span<const uint8_t> rest(pending_.data() + pending_off_,
                                      pending_.size() - pending_off_);
        size_t n = uart_->enqueue_input(rest);
        if (n == 0) break;
        pending_off_ += n;
    }
    const bool all_sent = pending_off_ == pending_.size();
    if (all_sent) {
        pending_.clear();
        pending_off_ = 0;
    }
    // Read more host input only once the guest has taken what we have: the
    // UART's FIFO is the backpressure, and host memory stays bounded.
    if (in_open_) (void)loop_.modify(in_fd_, all_sent ? uint32_t{EPOLLIN} : 0u);
}

void SerialConsole::on_input(bool tty) {
    uint8_t buf[4096];
    ssize_t n = ::read(in_fd_, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        // End of input: the guest simply gets no more bytes.
        loop_.remove(in_fd_);
        in_open_ = false;
        return;
    }
    for (ssize_t i = 0; i < n; ++i) {
        if (tty && saw_escape_) {
            saw_escape_ = false;
            if (buf[i] == 'x') {
                on_escape_();
                return;
            }
            if (buf[i] != 0x01) pending_.push_back(0x01);
        } else if (tty && buf[i] == 0x01) {
            saw_escape_ = true;
            continue;
        }
        pending_.push_back(buf[i]);
    }
    feed();
}

Result<void> SerialConsole::start_input(Serial8250& uart) {
    if (in_fd_ < 0) return {};
    uart_ = &uart;
    rx_drained_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!rx_drained_fd_) return fail_errno("eventfd");
    uart.set_on_rx_drained([this] {
        uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(rx_drained_fd_.get(), &one, sizeof(one));
    });
    KS_TRY(loop_.add(rx_drained_fd_.get(), EPOLLIN, [this](uint32_t) {
        uint64_t v;
        [[maybe_unused]] auto n = ::read(rx_drained_fd_.get(), &v, sizeof(v));
        feed();
    }));
    const bool tty = ::isatty(in_fd_);
    auto added = loop_.add(in_fd_, EPOLLIN, [this, tty](uint32_t) { on_input(tty); });
    // epoll cannot watch a regular file (stdin redirected from a file): such a
    // console simply has no input.
    if (!added) {
        log::debug("console input not pollable: {}", added.error().message);
        return {};
    }
    in_open_ = true;
    return {};
}

}  // namespace kvmsandbox
