#include "hardening/seccomp_policy.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

namespace kvmsandbox::hardening {
namespace {

TEST(SeccompPolicy, EveryRoleCanReportAndDie) {
    // The SIGSYS report needs write and _exit; the vCPU kick handler returns.
    for (ThreadRole role : kAllThreadRoles) {
        SeccompPolicy p = seccomp_policy(role);
        for (const char* must : {"write", "exit_group", "exit", "rt_sigreturn", "futex"})
            EXPECT_TRUE(p.allows(must)) << thread_role_name(role) << " lacks " << must;
    }
}

TEST(SeccompPolicy, NoRoleAllowsWhatAnEscapeWants) {
    for (ThreadRole role : kAllThreadRoles) {
        SeccompPolicy p = seccomp_policy(role);
        for (const auto& bad : never_allowed_syscalls())
            EXPECT_FALSE(p.allows(bad)) << thread_role_name(role) << " allows " << bad;
    }
}

TEST(SeccompPolicy, EveryNameIsASystemCallOfThisArch) {
    // A typo would only show when the filter is loaded, in a running VM.
    for (ThreadRole role : kAllThreadRoles)
        for (const auto& r : seccomp_policy(role).rules)
            EXPECT_NE(seccomp_syscall_resolve_name(r.name.c_str()), __NR_SCMP_ERROR)
                << thread_role_name(role) << ": " << r.name;
    for (const auto& bad : never_allowed_syscalls())
        EXPECT_NE(seccomp_syscall_resolve_name(bad.c_str()), __NR_SCMP_ERROR) << bad;
}

TEST(SeccompPolicy, OneRulePerName) {
    for (ThreadRole role : kAllThreadRoles) {
        SeccompPolicy p = seccomp_policy(role);
        for (size_t i = 1; i < p.rules.size(); ++i)
            EXPECT_NE(p.rules[i - 1].name, p.rules[i].name) << thread_role_name(role);
    }
}

TEST(SeccompPolicy, IoctlsByRole) {
    auto vcpu = seccomp_policy(ThreadRole::Vcpu);
    EXPECT_TRUE(vcpu.allows_value("ioctl", KVM_RUN));
    EXPECT_TRUE(vcpu.allows_value("ioctl", KVM_IRQFD));  // MSI-X programming on MMIO exits
    EXPECT_FALSE(vcpu.allows_value("ioctl", KVM_CREATE_VCPU));
    EXPECT_FALSE(vcpu.allows_value("ioctl", KVM_SET_USER_MEMORY_REGION));
    EXPECT_FALSE(vcpu.allows_value("ioctl", TUNSETIFF));

    auto main = seccomp_policy(ThreadRole::Main);
    EXPECT_FALSE(main.allows_value("ioctl", KVM_RUN));
    for (uint64_t req : std::initializer_list<uint64_t>{KVM_NMI, KVM_GET_REGS, KVM_GET_CLOCK,
                                                        KVM_SET_CLOCK, KVM_KVMCLOCK_CTRL})
        EXPECT_TRUE(main.allows_value("ioctl", req)) << std::hex << req;
    EXPECT_FALSE(main.allows_value("ioctl", KVM_SET_REGS));
    EXPECT_FALSE(main.allows_value("ioctl", KVM_CREATE_VM));

    auto worker = seccomp_policy(ThreadRole::Worker);
    EXPECT_TRUE(worker.allows_value("ioctl", KVM_IRQ_LINE));
    EXPECT_FALSE(worker.allows_value("ioctl", KVM_RUN));
    EXPECT_FALSE(worker.allows_value("ioctl", TIOCSTI));
    // Only the low 32 bits count, as in the kernel.
    EXPECT_TRUE(worker.allows_value("ioctl", (uint64_t{0xdead} << 32) | KVM_IRQ_LINE));

    auto slirp = seccomp_policy(ThreadRole::Slirp);
    EXPECT_TRUE(slirp.allows_value("ioctl", FIONREAD));
    EXPECT_FALSE(slirp.allows_value("ioctl", KVM_IRQ_LINE));
}

TEST(SeccompPolicy, FilesOnlyWhereFilesAreServed) {
    auto worker = seccomp_policy(ThreadRole::Worker);
    for (const char* f : {"openat2", "renameat2", "fchownat", "getdents64", "preadv", "pwritev",
                          "fallocate", "fdatasync", "mknodat", "symlinkat"})
        EXPECT_TRUE(worker.allows(f)) << f;
    EXPECT_FALSE(worker.allows("socket"));
    EXPECT_FALSE(worker.allows("connect"));
    for (ThreadRole role : {ThreadRole::Vcpu, ThreadRole::NetRx, ThreadRole::Slirp})
        for (const char* f : {"renameat2", "unlinkat", "fchownat", "mkdirat", "openat2"})
            EXPECT_FALSE(seccomp_policy(role).allows(f)) << thread_role_name(role) << " " << f;
    EXPECT_FALSE(seccomp_policy(ThreadRole::NetRx).allows("openat"));
}

TEST(SeccompPolicy, FilesAreOnlyReadOutsideTheWorkers) {
    for (ThreadRole role : {ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::Slirp}) {
        auto p = seccomp_policy(role);
        EXPECT_TRUE(p.allows_value("openat", O_RDONLY | O_CLOEXEC)) << thread_role_name(role);
        for (int bad :
             {O_WRONLY, O_RDWR, O_RDONLY | O_CREAT, O_RDONLY | O_TRUNC, O_TMPFILE | O_RDWR})
            EXPECT_FALSE(p.allows_value("openat", static_cast<uint64_t>(bad)))
                << thread_role_name(role) << " flags " << std::oct << bad;
    }
    auto worker = seccomp_policy(ThreadRole::Worker);
    EXPECT_TRUE(worker.allows_value("openat", O_RDWR | O_CREAT));
}

TEST(SeccompPolicy, SocketsAreInternetOnly) {
    for (ThreadRole role : {ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::Slirp}) {
        auto p = seccomp_policy(role);
        EXPECT_TRUE(p.allows_value("socket", AF_INET)) << thread_role_name(role);
        EXPECT_TRUE(p.allows_value("socket", AF_INET6)) << thread_role_name(role);
        EXPECT_FALSE(p.allows_value("socket", AF_NETLINK)) << thread_role_name(role);
        EXPECT_FALSE(p.allows_value("socket", AF_PACKET)) << thread_role_name(role);
        EXPECT_FALSE(p.allows_value("socket", AF_UNIX)) << thread_role_name(role);
    }
    EXPECT_FALSE(seccomp_policy(ThreadRole::NetRx).allows("socket"));
}

TEST(SeccompPolicy, NoExecutableMappings) {
    for (ThreadRole role : kAllThreadRoles) {
        auto p = seccomp_policy(role);
        EXPECT_TRUE(p.allows_value("mmap", PROT_READ | PROT_WRITE)) << thread_role_name(role);
        EXPECT_FALSE(p.allows_value("mmap", PROT_READ | PROT_EXEC)) << thread_role_name(role);
        EXPECT_FALSE(p.allows_value("mprotect", PROT_EXEC)) << thread_role_name(role);
    }
}

}  // namespace
}  // namespace kvmsandbox::hardening
