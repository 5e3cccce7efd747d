#include "hardening/privileges.h"

#include <grp.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>
#include <memory>

namespace kvmsandbox::hardening {

namespace {

std::optional<unsigned long> parse_id(std::string_view s) {
    unsigned long v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty() || v >= 0xffffffffu)
        return std::nullopt;
    return v;
}

struct CapDeleter {
    void operator()(cap_t c) const { cap_free(c); }
};
using UniqueCap = std::unique_ptr<std::remove_pointer_t<cap_t>, CapDeleter>;

bool has_flag(cap_value_t cap, cap_flag_t flag) {
    UniqueCap now(cap_get_proc());
    cap_flag_value_t v = CAP_CLEAR;
    return now && cap_get_flag(now.get(), cap, flag, &v) == 0 && v == CAP_SET;
}
bool has_effective(cap_value_t cap) {
    return has_flag(cap, CAP_EFFECTIVE);
}
bool has_permitted(cap_value_t cap) {
    return has_flag(cap, CAP_PERMITTED);
}

}  // namespace

Result<UserSpec> parse_user_spec(std::string_view spec) {
    const auto colon = spec.find(':');
    const std::string user(spec.substr(0, colon));
    const std::optional<std::string> group_name =
        colon == std::string_view::npos ? std::nullopt
                                        : std::optional<std::string>(spec.substr(colon + 1));
    if (user.empty()) return failf("--user {}: no user", spec);
    UserSpec u;
    const passwd* pw = nullptr;
    if (auto id = parse_id(user)) {
        u.uid = static_cast<uid_t>(*id);
        pw = ::getpwuid(u.uid);
        u.gid = pw ? pw->pw_gid : u.uid;
    } else {
        pw = ::getpwnam(user.c_str());
        if (!pw) return failf("--user {}: no such user", spec);
        u.uid = pw->pw_uid;
        u.gid = pw->pw_gid;
    }
    if (group_name) {
        if (auto id = parse_id(*group_name)) {
            u.gid = static_cast<gid_t>(*id);
        } else {
            const struct group* gr = ::getgrnam(group_name->c_str());
            if (!gr) return failf("--user {}: no such group", spec);
            u.gid = gr->gr_gid;
        }
    }
    // A named account keeps its supplementary groups, as login would give.
    if (pw && !group_name) {
        int n = 64;
        std::vector<gid_t> g(static_cast<size_t>(n));
        if (::getgrouplist(pw->pw_name, u.gid, g.data(), &n) < 0) {
            g.resize(static_cast<size_t>(n));
            if (::getgrouplist(pw->pw_name, u.gid, g.data(), &n) < 0) n = 0;
        }
        g.resize(static_cast<size_t>(n));
        u.groups = std::move(g);
    }
    return u;
}

std::vector<cap_value_t> kept_capabilities(ThreadRole role, bool serves_as_root) {
    if (role != ThreadRole::Worker || !serves_as_root) return {};
    return {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID};
}

Result<void> drop_thread_privileges(const ThreadPrivileges& p) {
    // Without CAP_SETPCAP (a caller that is not root) there is nothing to
    // lock and the bounding set cannot shrink; it only matters at execve,
    // which no thread's filter allows and no_new_privs neutralizes.
    if (has_effective(CAP_SETPCAP)) {
        // Not SECBIT_NO_SETUID_FIXUP: the uid switch below must clear the
        // capabilities of a thread that leaves uid 0.
        const unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                              SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        if (cap_set_secbits(bits) != 0) return fail_errno("PR_SET_SECUREBITS");
        for (cap_value_t c = 0; c < static_cast<cap_value_t>(cap_max_bits()); ++c)
            if (cap_drop_bound(c) != 0 && errno != EINVAL) return fail_errno("PR_CAPBSET_DROP");
    }
    if (p.user) {
        const UserSpec& u = *p.user;
        if (::syscall(SYS_setgroups, u.groups.size(), u.groups.data()) != 0)
            return fail_errno("setgroups");
        if (::syscall(SYS_setresgid, u.gid, u.gid, u.gid) != 0) return fail_errno("setresgid");
        if (::syscall(SYS_setresuid, u.uid, u.uid, u.uid) != 0) return fail_errno("setresuid");
    }
    // Keep only what the thread still holds: a root without capabilities
    // (in a user namespace, say) cannot be given them back.
    std::vector<cap_value_t> keep;
    for (cap_value_t c : p.keep)
        if (has_permitted(c)) keep.push_back(c);
    UniqueCap caps(cap_init());
    if (!caps) return fail_errno("cap_init");
    if (!keep.empty()) {
        if (cap_set_flag(caps.get(), CAP_EFFECTIVE, static_cast<int>(keep.size()), keep.data(),
                         CAP_SET) != 0 ||
            cap_set_flag(caps.get(), CAP_PERMITTED, static_cast<int>(keep.size()), keep.data(),
                         CAP_SET) != 0)
            return fail_errno("cap_set_flag");
    }
    if (cap_set_proc(caps.get()) != 0) return fail_errno("capset");
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        return fail_errno("PR_CAP_AMBIENT_CLEAR_ALL");
    return {};
}

}  // namespace kvmsandbox::hardening
