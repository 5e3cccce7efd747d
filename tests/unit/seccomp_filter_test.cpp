// Filters are loaded only in forked children: a filter cannot be removed, and
// the test process (with the sanitizers' own system calls) must go on.
#include "hardening/seccomp_filter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "forked_child.h"

namespace kvmsandbox::hardening {
namespace {

using kvmsandbox::testing::run_in_child;

void load_or_exit(ThreadRole role) {
    if (!install_sigsys_reporter()) ::_exit(90);
    if (!install_seccomp_filter(seccomp_policy(role))) ::_exit(91);
}

bool exited_with(int status, int code) {
    return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

TEST(SeccompFilter, ForbiddenCallDiesWithOneLineNamingIt) {
    auto r = run_in_child([] {
        load_or_exit(ThreadRole::Worker);
        ::syscall(SYS_personality, 0xffffffffUL);
        ::_exit(0);  // not reached
    });
    EXPECT_TRUE(exited_with(r.status, kSeccompExitCode)) << r.status << " " << r.err;
    EXPECT_EQ(r.err,
              "kvmsandbox: seccomp: forbidden system call personality (135) in worker "
              "thread\n");
}

TEST(SeccompFilter, EveryRoleLoadsAndKeepsItsOwnCallsWorking) {
    for (ThreadRole role : kAllThreadRoles) {
        auto r = run_in_child([role] {
            load_or_exit(role);
            // What any thread does: allocate, lock, tell the time, log.
            void* big = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (big == MAP_FAILED) ::_exit(92);
            ::munmap(big, 1 << 20);
            timespec ts;
            ::clock_gettime(CLOCK_MONOTONIC, &ts);
            ::_exit(::getpid() > 0 ? 0 : 93);
        });
        EXPECT_TRUE(exited_with(r.status, 0))
            << thread_role_name(role) << ": status " << r.status << " " << r.err;
    }
}

TEST(SeccompFilter, ExecIsForbiddenEverywhere) {
    for (ThreadRole role : kAllThreadRoles) {
        auto r = run_in_child([role] {
            load_or_exit(role);
            char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
            ::execve("/bin/true", argv, nullptr);
            ::_exit(0);
        });
        EXPECT_TRUE(exited_with(r.status, kSeccompExitCode)) << thread_role_name(role);
        EXPECT_NE(r.err.find("forbidden system call execve (59) in "), std::string::npos) << r.err;
        EXPECT_NE(r.err.find(thread_role_name(role)), std::string::npos) << r.err;
    }
}

TEST(SeccompFilter, IoctlOutsideTheRoleListTraps) {
    auto r = run_in_child([] {
        load_or_exit(ThreadRole::Worker);
        termios t;
        ::ioctl(STDIN_FILENO, TCGETS, &t);
        ::_exit(0);
    });
    EXPECT_TRUE(exited_with(r.status, kSeccompExitCode));
    EXPECT_EQ(r.err, "kvmsandbox: seccomp: forbidden system call ioctl (16) in worker thread\n");

    // An allowed request passes the filter (and fails in the kernel: fd 0
    // is no VM).
    auto ok = run_in_child([] {
        load_or_exit(ThreadRole::Worker);
        kvm_irq_level l{};
        int rc = ::ioctl(STDIN_FILENO, KVM_IRQ_LINE, &l);
        ::_exit(rc < 0 ? 0 : 94);
    });
    EXPECT_TRUE(exited_with(ok.status, 0)) << ok.status << " " << ok.err;
}

TEST(SeccompFilter, ExecutableMappingTraps) {
    auto r = run_in_child([] {
        load_or_exit(ThreadRole::Main);
        ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ::_exit(0);
    });
    EXPECT_TRUE(exited_with(r.status, kSeccompExitCode));
    EXPECT_EQ(r.err, "kvmsandbox: seccomp: forbidden system call mmap (9) in main thread\n");
}

TEST(SeccompFilter, FilesAreTheWorkersOnly) {
    auto r = run_in_child([] {
        load_or_exit(ThreadRole::NetRx);
        ::open("/dev/null", O_RDONLY);
        ::_exit(0);
    });
    EXPECT_TRUE(exited_with(r.status, kSeccompExitCode));
    EXPECT_EQ(r.err, "kvmsandbox: seccomp: forbidden system call openat (257) in net-rx thread\n");
    auto ok = run_in_child([] {
        load_or_exit(ThreadRole::Worker);
        int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ::_exit(fd >= 0 ? 0 : 95);
    });
    EXPECT_TRUE(exited_with(ok.status, 0)) << ok.err;
}

TEST(SeccompFilter, TheLoopOpensOnlyToRead) {
    auto ok = run_in_child([] {
        load_or_exit(ThreadRole::Main);
        int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        ::_exit(fd >= 0 ? 0 : 96);
    });
    EXPECT_TRUE(exited_with(ok.status, 0)) << ok.err;
    auto r = run_in_child([] {
        load_or_exit(ThreadRole::Main);
        ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        ::_exit(0);
    });
    EXPECT_TRUE(exited_with(r.status, kSeccompExitCode));
    EXPECT_EQ(r.err, "kvmsandbox: seccomp: forbidden system call openat (257) in main thread\n");
}

}  // namespace
}  // namespace kvmsandbox::hardening
