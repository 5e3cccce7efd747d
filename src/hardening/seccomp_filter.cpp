#include "hardening/seccomp_filter.h"

#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

namespace kvmsandbox::hardening {

namespace {

// x86-64 numbers stay below 512 for years to come; a number past the table
// prints without a name.
constexpr int kNameTableSize = 512;
constexpr size_t kNameLen = 32;
std::array<std::array<char, kNameLen>, kNameTableSize> g_names{};

// initial-exec: the handler reads it, and a TLS access must not allocate.
__attribute__((tls_model("initial-exec"))) thread_local const char* t_role = nullptr;

// Appends `s` to buf at *pos, bounded by the buffer; async-signal-safe.
void append(char* buf, size_t cap, size_t* pos, const char* s) {
    while (*s && *pos + 1 < cap) buf[(*pos)++] = *s++;
}

void append_number(char* buf, size_t cap, size_t* pos, long v) {
    char digits[24];
    int n = 0;
    bool neg = v < 0;
    unsigned long u = neg ? 0ul - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
    do {
        digits[n++] = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u && n < 23);
    if (neg) append(buf, cap, pos, "-");
    while (n > 0 && *pos + 1 < cap) buf[(*pos)++] = digits[--n];
}

void on_sigsys(int, siginfo_t* info, void*) {
    const long nr = info->si_syscall;
    const char* name =
        (nr >= 0 && nr < kNameTableSize && g_names[nr][0]) ? g_names[nr].data() : "?";
    char msg[192];
    size_t pos = 0;
    append(msg, sizeof msg, &pos, "kvmsandbox: seccomp: forbidden system call ");
    append(msg, sizeof msg, &pos, name);
    append(msg, sizeof msg, &pos, " (");
    append_number(msg, sizeof msg, &pos, nr);
    append(msg, sizeof msg, &pos, ") in ");
    append(msg, sizeof msg, &pos, t_role ? t_role : "unknown");
    append(msg, sizeof msg, &pos, " thread\n");
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, msg, pos);
    ::_exit(kSeccompExitCode);
}

struct CtxDeleter {
    void operator()(void* ctx) const { seccomp_release(static_cast<scmp_filter_ctx>(ctx)); }
};
using UniqueCtx = std::unique_ptr<void, CtxDeleter>;

Result<void> seccomp_failed(const char* what, int rc) {
    return failf("seccomp: {}: {}", what, std::strerror(-rc));
}

}  // namespace

Result<void> install_sigsys_reporter() {
    static std::once_flag names_once;
    std::call_once(names_once, [] {
        for (int nr = 0; nr < kNameTableSize; ++nr) {
            char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, nr);
            if (!n) continue;
            std::strncpy(g_names[nr].data(), n, kNameLen - 1);
            std::free(n);
        }
    });
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) return fail_errno("sigaction(SIGSYS)");
    return {};
}

Result<void> install_seccomp_filter(const SeccompPolicy& policy) {
    // Whatever the role, a call outside its list traps into on_sigsys; a call
    // through another ABI (i386 int 0x80, x32) kills the process outright.
    UniqueCtx ctx(seccomp_init(SCMP_ACT_TRAP));
    if (!ctx) return fail("seccomp: cannot create a filter");
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        rc < 0)
        return seccomp_failed("bad-arch action", rc);
    for (const auto& r : policy.rules) {
        const int nr = seccomp_syscall_resolve_name(r.name.c_str());
        if (nr == __NR_SCMP_ERROR) return failf("seccomp: unknown system call {}", r.name);
        if (!r.conditional()) {
            if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0); rc < 0)
                return seccomp_failed(r.name.c_str(), rc);
            continue;
        }
        for (uint64_t v : r.values) {
            scmp_arg_cmp cmp{static_cast<unsigned>(r.arg), SCMP_CMP_MASKED_EQ, r.mask, v};
            if (int rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, nr, 1, &cmp); rc < 0)
                return seccomp_failed(r.name.c_str(), rc);
        }
    }
    // Set before loading so the report names the role from the first trap.
    t_role = thread_role_name(policy.role);
    // libseccomp sets no_new_privs itself (SCMP_FLTATR_CTL_NNP defaults on);
    // doing it here too keeps the guarantee explicit if that default changes.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno("PR_SET_NO_NEW_PRIVS");
    if (int rc = seccomp_load(ctx.get()); rc < 0) return seccomp_failed("loading the filter", rc);
    return {};
}

}  // namespace kvmsandbox::hardening
