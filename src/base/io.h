// Writing whole buffers to an fd: the one place that knows about short
// writes, EINTR and full non-blocking fds, for every host-side writer (the
// kernel unpacker's pipe, the session's output streams).
#pragma once

#include <cstdint>
#include <span>

#include "base/result.h"

namespace kvmsandbox {

// Writes every byte of `data` to `fd`. Short writes and EINTR are retried; a
// non-blocking fd that is full is waited for (poll) rather than failed.
// Fails on a write error (errno in the message, e.g. EPIPE when the reader
// went away) and on a write that makes no progress.
Result<void> write_all(int fd, std::span<const uint8_t> data);

// The same for a list of buffers, in order, written with writev (at most
// IOV_MAX at a time). Empty buffers are allowed.
Result<void> write_all(int fd, std::span<const std::span<const uint8_t>> bufs);
// Overload for views of mutable buffers (guest buffers handed to backends).
Result<void> write_all(int fd, std::span<const std::span<uint8_t>> bufs);

}  // namespace kvmsandbox
