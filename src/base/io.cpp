#include "base/io.h"

#include <limits.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace kvmsandbox {

namespace {

// A full non-blocking fd: wait until it drains. The timeout only bounds one
// wait; the caller retries the write, so a missed wakeup costs a second.
void wait_writable(int fd) {
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, 1000);
}

template <typename Buf>
Result<void> write_all_bufs(int fd, std::span<const Buf> bufs) {
    std::vector<iovec> iov;
    iov.reserve(std::min<size_t>(bufs.size(), IOV_MAX));
    size_t next = 0;   // first buffer not yet in `iov`
    size_t first = 0;  // first entry of `iov` with bytes left
    for (;;) {
        // Refill once every entry has been written.
        if (first == iov.size()) {
            iov.clear();
            first = 0;
            while (next < bufs.size() && iov.size() < IOV_MAX) {
                const auto& b = bufs[next++];
                if (!b.empty()) iov.push_back(iovec{const_cast<uint8_t*>(b.data()), b.size()});
            }
            if (iov.empty()) return {};
        }
        const ssize_t n = ::writev(fd, iov.data() + first, static_cast<int>(iov.size() - first));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_writable(fd);
            continue;
        }
        if (n < 0) return fail_errno("write");
        if (n == 0) return fail("write: no progress");
        // Skip what was written: whole entries, then part of one.
        size_t left = static_cast<size_t>(n);
        while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
        if (left) {
            iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
            iov[first].iov_len -= left;
        }
    }
}

}  // namespace

Result<void> write_all(int fd, std::span<const uint8_t> data) {
    const std::span<const uint8_t> one[] = {data};
    return write_all(fd, std::span<const std::span<const uint8_t>>(one));
}

Result<void> write_all(int fd, std::span<const std::span<const uint8_t>> bufs) {
    return write_all_bufs(fd, bufs);
}

Result<void> write_all(int fd, std::span<const std::span<uint8_t>> bufs) {
    return write_all_bufs(fd, bufs);
}

}  // namespace kvmsandbox
