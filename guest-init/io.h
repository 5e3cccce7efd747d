// Small I/O helpers shared by the guest init's pieces.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>

namespace kvmsandbox::guest_init {

// Writes everything, retrying partial writes and EINTR. False on error.
bool write_all(int fd, const void* data, size_t len);
inline bool write_all(int fd, std::string_view s) {
    return write_all(fd, s.data(), s.size());
}

// Like write_all on a possibly non-blocking fd, but gives up after timeout_ms
// in total: a host side that stopped listening must not keep PID 1 from
// powering off.
bool write_all_deadline(int fd, const void* data, size_t len, int timeout_ms);

// CLOCK_MONOTONIC in milliseconds, for deadlines.
long long monotonic_ms();

// CLOCK_BOOTTIME in nanoseconds: time since the guest kernel started.
unsigned long long boottime_ns();

// Sleeps (EINTR ends it early, which only shortens a polling interval).
void sleep_ms(long ms);

// The whole content of a (small) file.
std::expected<std::string, int> read_file(const std::string& path);

// "msg: strerror(err)".
std::string errno_message(std::string_view what, int err);

}  // namespace kvmsandbox::guest_init
