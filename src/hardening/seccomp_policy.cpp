#include "hardening/seccomp_policy.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>

#include <algorithm>
#include <initializer_list>

#include "kvm/ioctls.h"

namespace kvmsandbox::hardening {

namespace {

// The kernel reads ioctl's request and socket's domain as 32-bit ints, so
// only the low 32 bits are compared: a caller's garbage in the upper half
// must neither pass nor fail the check on its own.
constexpr uint64_t kLow32 = 0xffffffffu;

// Every thread: what glibc and libstdc++ do behind any code (malloc, locks,
// thread exit, time, abort), the SIGSYS report (write, exit_group) and the
// return from the vCPU kick handler (rt_sigreturn).
constexpr std::initializer_list<const char*> kBase = {
    "brk",          "munmap",         "mremap",          "madvise",
    "futex",        "rt_sigprocmask", "rt_sigreturn",    "rt_sigaction",
    "sigaltstack",  "clock_gettime",  "clock_nanosleep", "nanosleep",
    "gettimeofday", "getpid",         "gettid",          "tgkill",
    "sched_yield",  "getrandom",      "restart_syscall", "exit",
    "exit_group",   "write",          "writev",          "close",
    "fstat",        "newfstatat",     "lseek",
};

// mmap and mprotect are allowed without PROT_EXEC only: nothing maps code
// once the VM runs, and a hijacked thread should not get fresh executable
// memory.
constexpr std::initializer_list<const char*> kNoExecMappings = {"mmap", "mprotect"};

// A device's queue_notify can run on the loop thread (ioeventfd) and, for a
// notify write of an unusual width that no ioeventfd caught, on the vCPU
// thread that took the MMIO exit. So both carry what the devices' notify
// paths do: virtio-net transmit into libslirp (which opens host sockets for
// the guest's connections and reads /etc/resolv.conf for DNS) or a tap,
// virtio-rng's getrandom, the balloon's madvise, the console's writes to our
// streams (pwritev2 with RWF_NOWAIT, so a slow reader never stalls the
// loop), and re-arming the loop (openat: read-only, see kOpenWriteFlags).
constexpr std::initializer_list<const char*> kDeviceNotify = {
    "read",     "readv",       "poll",        "ppoll",      "epoll_ctl",  "eventfd2", "connect",
    "bind",     "getsockname", "getpeername", "setsockopt", "getsockopt", "sendto",   "sendmsg",
    "recvfrom", "recvmsg",     "shutdown",    "fcntl",      "statx",      "pwritev2",
};

// The main loop, besides the device notify paths: epoll, the signalfd, the
// control socket (accept, request timers), stat's /proc/self/statm, the
// instance files it removes at exit, and joining the other threads.
constexpr std::initializer_list<const char*> kMainOnly = {
    "epoll_wait",      "epoll_pwait", "accept4",  "accept",  "timerfd_create", "timerfd_settime",
    "timerfd_gettime", "unlink",      "unlinkat", "flock",   "getuid",         "geteuid",
    "getgid",          "getegid",     "sysinfo",  "pread64",
};

// The worker pool: the 9p server's file operations (it opens with openat2
// and RESOLVE_BENEATH, changes modes through /proc/self/fd paths, reads
// directories with getdents64) and virtio-blk's vectored I/O.
constexpr std::initializer_list<const char*> kWorker = {
    "read",         "pread64",      "pwrite64",  "preadv",     "pwritev",   "preadv2",
    "pwritev2",     "openat",       "openat2",   "statx",      "fstatfs",   "statfs",
    "readlinkat",   "mkdirat",      "mknodat",   "unlinkat",   "renameat",  "renameat2",
    "linkat",       "symlinkat",    "fchmodat",  "fchmod",     "fchownat",  "fchown",
    "utimensat",    "ftruncate",    "fallocate", "fsync",      "fdatasync", "getdents64",
    "fcntl",        "flock",        "getxattr",  "lgetxattr",  "fgetxattr", "listxattr",
    "llistxattr",   "flistxattr",   "setxattr",  "lsetxattr",  "fsetxattr", "removexattr",
    "lremovexattr", "fremovexattr", "faccessat", "faccessat2", "readlink",  "dup",
};

// virtio-net's receive thread: waits on the backend and its wake eventfd,
// reads frames (tap: read; slirp: a queue and its eventfd) and interrupts
// the guest (irqfd write, or KVM_IRQ_LINE for INTx).
constexpr std::initializer_list<const char*> kNetRx = {
    "read", "readv", "recvfrom", "recvmsg", "poll", "ppoll",
};

// libslirp's thread: the host side of the guest's connections and of the
// port forwards, and the resolver configuration it re-reads.
constexpr std::initializer_list<const char*> kSlirp = {
    "read",    "readv",    "poll",        "ppoll",       "accept",     "accept4",    "connect",
    "bind",    "listen",   "getsockname", "getpeername", "setsockopt", "getsockopt", "sendto",
    "sendmsg", "recvfrom", "recvmsg",     "shutdown",    "fcntl",      "statx",
};

// Interrupt delivery, from whichever thread completes a request: MSI-X goes
// through an irqfd (a write), INTx through KVM_IRQ_LINE.
const std::vector<uint64_t> kIrqIoctls = {KVM_IRQ_LINE};

// The vCPU thread: KVM_RUN, and what its MMIO exits reach: the transport
// programming MSI-X routes and notify ioeventfds, a device activation that
// sets a tap's offloads.
std::vector<uint64_t> vcpu_ioctls() {
    return {KVM_RUN,       KVM_IRQ_LINE, KVM_IRQFD, KVM_IOEVENTFD, kvm_ioctl::kSetGsiRouting,
            TUNSETOFFLOAD, FIONREAD,     FIONBIO};
}

// The loop: the vCPU set minus KVM_RUN, plus pause/resume/debug (clock,
// kvmclock, registers, NMI) and the terminal (raw mode, window size).
std::vector<uint64_t> main_ioctls() {
    return {KVM_IRQ_LINE,  KVM_IRQFD,     KVM_IOEVENTFD,     kvm_ioctl::kSetGsiRouting,
            KVM_GET_CLOCK, KVM_SET_CLOCK, KVM_KVMCLOCK_CTRL, KVM_GET_REGS,
            KVM_GET_SREGS, KVM_NMI,       TUNSETOFFLOAD,     TCGETS,
            TCSETS,        TCSETSW,       TCSETSF,           TIOCGWINSZ,
            FIONREAD,      FIONBIO};
}

const std::vector<uint64_t> kInetDomains = {AF_INET, AF_INET6};

// Outside the worker pool files are only read (/proc/self/statm for stat,
// /etc/resolv.conf for libslirp's DNS): openat passes without any flag that
// writes, creates or truncates.
constexpr uint64_t kOpenWriteFlags = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | __O_TMPFILE;

class Builder {
  public:
    explicit Builder(ThreadRole role) { policy_.role = role; }

    Builder& allow(std::initializer_list<const char*> names) {
        for (const char* n : names) add(SyscallRule{n, -1, 0, {}});
        return *this;
    }
    Builder& allow_if(const char* name, int arg, uint64_t mask, std::vector<uint64_t> values) {
        add(SyscallRule{name, arg, mask, std::move(values)});
        return *this;
    }
    SeccompPolicy done() {
        std::sort(policy_.rules.begin(), policy_.rules.end(),
                  [](const SyscallRule& a, const SyscallRule& b) { return a.name < b.name; });
        return std::move(policy_);
    }

  private:
    // Lists overlap on purpose (each says what its code needs); a name given
    // twice keeps the looser rule, and two conditions on the same argument
    // merge their values.
    void add(SyscallRule r) {
        auto it = std::find_if(policy_.rules.begin(), policy_.rules.end(),
                               [&](const SyscallRule& x) { return x.name == r.name; });
        if (it == policy_.rules.end()) {
            policy_.rules.push_back(std::move(r));
            return;
        }
        if (!it->conditional()) return;
        if (!r.conditional()) {
            *it = std::move(r);
            return;
        }
        for (uint64_t v : r.values)
            if (std::find(it->values.begin(), it->values.end(), v) == it->values.end())
                it->values.push_back(v);
    }

    SeccompPolicy policy_;
};

}  // namespace

const SyscallRule* SeccompPolicy::find(std::string_view name) const {
    for (const auto& r : rules)
        if (r.name == name) return &r;
    return nullptr;
}

bool SeccompPolicy::allows_value(std::string_view name, uint64_t value) const {
    const SyscallRule* r = find(name);
    if (!r) return false;
    if (!r->conditional()) return true;
    return std::any_of(r->values.begin(), r->values.end(),
                       [&](uint64_t v) { return (value & r->mask) == v; });
}

SeccompPolicy seccomp_policy(ThreadRole role) {
    Builder b(role);
    b.allow(kBase);
    for (const char* m : kNoExecMappings) b.allow_if(m, 2, PROT_EXEC, {0});
    switch (role) {
        case ThreadRole::Main:
            b.allow(kDeviceNotify).allow(kMainOnly);
            b.allow_if("ioctl", 1, kLow32, main_ioctls());
            b.allow_if("socket", 0, kLow32, kInetDomains);
            b.allow_if("openat", 2, kOpenWriteFlags, {0});
            break;
        case ThreadRole::Vcpu:
            b.allow(kDeviceNotify);
            b.allow_if("ioctl", 1, kLow32, vcpu_ioctls());
            b.allow_if("socket", 0, kLow32, kInetDomains);
            b.allow_if("openat", 2, kOpenWriteFlags, {0});
            break;
        case ThreadRole::Worker:
            b.allow(kWorker);
            b.allow_if("ioctl", 1, kLow32, kIrqIoctls);
            break;
        case ThreadRole::NetRx:
            b.allow(kNetRx);
            b.allow_if("ioctl", 1, kLow32, kIrqIoctls);
            break;
        case ThreadRole::Slirp:
            b.allow(kSlirp);
            b.allow_if("ioctl", 1, kLow32, {FIONREAD, FIONBIO});
            b.allow_if("socket", 0, kLow32, kInetDomains);
            b.allow_if("openat", 2, kOpenWriteFlags, {0});
            break;
    }
    return b.done();
}

const std::vector<std::string>& never_allowed_syscalls() {
    static const std::vector<std::string> names = {
        "execve",
        "execveat",
        "ptrace",
        "open_by_handle_at",
        "name_to_handle_at",
        "personality",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "fork",
        "vfork",
        "bpf",
        "perf_event_open",
        "process_vm_readv",
        "process_vm_writev",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "setuid",
        "setresuid",
        "setgid",
        "setresgid",
        "setgroups",
        "capset",
        "prctl",
        "seccomp",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "io_uring_setup",
        "kill",
        "reboot",
        "swapon",
        "acct",
        "iopl",
        "ioperm",
        "memfd_create",
    };
    return names;
}

}  // namespace kvmsandbox::hardening
