// Diagnostics of the guest's PID 1. They go to the serial console only, never
// to CMD's streams (those are the virtio ports), and only when the kernel
// command line asks for them with "kvmsandbox.debug": a successful run is
// silent. Errors are always printed, since they end the run.
#pragma once

namespace kvmsandbox::guest_init {

// Opens /dev/console (needs devtmpfs on /dev); before that, messages are lost.
void log_open_console(bool debug);
bool log_debug_enabled();

void debugf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void errorf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace kvmsandbox::guest_init
