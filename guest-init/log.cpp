#include "guest-init/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>

#include "guest-init/io.h"

namespace kvmsandbox::guest_init {

namespace {

int g_console = -1;
bool g_debug = false;

void vlog(const char* level, const char* fmt, va_list ap) {
    if (g_console < 0) return;
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "kvmsandbox-init: %s", level);
    if (n < 0) return;
    int m = vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n) - 1, fmt, ap);
    if (m < 0) return;
    size_t len = static_cast<size_t>(n) + static_cast<size_t>(m);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    write_all(g_console, buf, len);
}

}  // namespace

void log_open_console(bool debug) {
    g_debug = debug;
    if (g_console < 0) g_console = ::open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
}

bool log_debug_enabled() {
    return g_debug;
}

void debugf(const char* fmt, ...) {
    if (!g_debug) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void errorf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog("error: ", fmt, ap);
    va_end(ap);
}

}  // namespace kvmsandbox::guest_init
