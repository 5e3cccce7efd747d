// Runs a function in a forked child and collects its stderr and wait status:
// for tests of things that cannot be undone in the test process itself
// (seccomp filters, dropped capabilities). The child must end with _exit.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

namespace kvmsandbox::testing {

struct ChildResult {
    int status = -1;  // as waitpid reports it
    std::string err;  // everything the child wrote to stderr
};

inline ChildResult run_in_child(const std::function<void()>& body) {
    ChildResult res;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return res;
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(p[1], STDERR_FILENO);
        body();
        ::_exit(0);
    }
    ::close(p[1]);
    char buf[512];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) res.err.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    if (pid > 0) ::waitpid(pid, &res.status, 0);
    return res;
}

}  // namespace kvmsandbox::testing
