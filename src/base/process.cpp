#include "base/process.h"

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

namespace kvmsandbox {

uint64_t process_rss_bytes() {
    // (/proc files report a size of 0, so no read_file().)
    uint64_t rss = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "re")) {
        unsigned long size = 0, resident = 0;
        if (std::fscanf(f, "%lu %lu", &size, &resident) == 2)
            rss = uint64_t{resident} * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        std::fclose(f);
    }
    return rss;
}

Result<UniqueFd> signals_to_fd(std::initializer_list<int> signals) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : signals) sigaddset(&mask, s);
    if (::pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) return fail("pthread_sigmask failed");
    UniqueFd fd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd) return fail_errno("signalfd");
    ::signal(SIGPIPE, SIG_IGN);
    return fd;
}

}  // namespace kvmsandbox
