#include "hardening/hardening.h"

#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "base/log.h"
#include "base/thread_role.h"
#include "hardening/seccomp_filter.h"
#include "hardening/seccomp_policy.h"

namespace kvmsandbox::hardening {

namespace {

enum class State { Unarmed, Pending, Committed, Abandoned };

struct Plan {
    std::mutex mu;
    std::condition_variable cv;
    State state = State::Unarmed;
    HardeningOptions opts;
    bool serves_as_root = false;
};

Plan& plan() {
    static Plan p;
    return p;
}

thread_local bool t_hardened = false;

// A thread that cannot harden itself must not go on to serve the guest.
[[noreturn]] void die(ThreadRole role, const std::string& why) {
    log::error("cannot harden the {} thread: {}", thread_role_name(role), why);
    ::_exit(kSeccompExitCode);
}

void harden_this_thread(ThreadRole role, const HardeningOptions& o, bool serves_as_root) {
    ThreadPrivileges p;
    p.user = o.user;
    p.keep = kept_capabilities(role, serves_as_root);
    if (auto r = drop_thread_privileges(p); !r) die(role, r.error().message);
    if (o.seccomp) {
        if (auto r = install_seccomp_filter(seccomp_policy(role)); !r) die(role, r.error().message);
    }
    if (role == ThreadRole::Main && o.debug_forbidden_syscall)
        ::syscall(SYS_personality, 0xffffffffUL);
}

void on_enter(ThreadRole role) {
    if (t_hardened) return;
    // Named by role, so /proc/PID/task/*/comm tells which thread is which
    // (the main thread keeps the process's name).
    if (role != ThreadRole::Main) ::prctl(PR_SET_NAME, thread_role_name(role), 0, 0, 0);
    Plan& pl = plan();
    std::unique_lock lock(pl.mu);
    // The main thread enters from Machine::run, after commit() in the normal
    // order; anything else is a set-up path that forgot to commit, and
    // running the guest unhardened is not the answer.
    if (role == ThreadRole::Main && pl.state == State::Pending)
        die(role, "set-up did not finish (no commit before the VM ran)");
    pl.cv.wait(lock, [&] { return pl.state != State::Pending; });
    if (pl.state != State::Committed) return;
    const HardeningOptions opts = pl.opts;
    const bool root = pl.serves_as_root;
    lock.unlock();
    harden_this_thread(role, opts, root);
    t_hardened = true;
}

}  // namespace

void read_hardening_debug_env(HardeningOptions& o) {
    const char* v = std::getenv(kDebugForbiddenSyscallEnv);
    o.debug_forbidden_syscall = v && std::strcmp(v, "1") == 0;
}

Result<void> arm_hardening(const HardeningOptions& o) {
    Plan& pl = plan();
    {
        std::lock_guard lock(pl.mu);
        if (pl.state != State::Unarmed) return fail("hardening armed twice");
        pl.opts = o;
        pl.serves_as_root = (o.user ? o.user->uid : ::geteuid()) == 0;
        pl.state = State::Pending;
    }
    set_thread_role_hook(on_enter);
    return {};
}

Result<void> HardeningGate::commit() {
    KS_TRY(install_sigsys_reporter());
    Plan& pl = plan();
    {
        std::lock_guard lock(pl.mu);
        if (pl.state != State::Pending) return fail("hardening was not armed");
        pl.state = State::Committed;
    }
    pl.cv.notify_all();
    return {};
}

HardeningGate::~HardeningGate() {
    Plan& pl = plan();
    {
        std::lock_guard lock(pl.mu);
        if (pl.state != State::Pending) return;
        pl.state = State::Abandoned;
    }
    pl.cv.notify_all();
}

}  // namespace kvmsandbox::hardening
