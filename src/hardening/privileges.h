// Capabilities and identity of a thread of the VM process once its set-up is
// done. Linux keeps both per thread (capset, the bounding set, securebits and
// the raw set*id system calls act on the calling thread), so every thread
// drops its own, from the same plan.
#pragma once

#include <sys/capability.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/thread_role.h"

namespace kvmsandbox::hardening {

// --user: whom the VM process becomes once /dev/kvm, taps and files are open.
struct UserSpec {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups (a name's, else none)
};

// "UID[:GID]" or "NAME[:GROUP]"; a name without a group takes its primary
// group and its supplementary groups, a bare UID takes GID = UID unless the
// passwd database knows it.
Result<UserSpec> parse_user_spec(std::string_view spec);

// What a role keeps. Only the worker pool, and only when it serves files as
// root (uid 0 after any --user), keeps what the 9p server needs to act as
// the guest's root on the host files: CAP_CHOWN (setattr's fchownat to any
// owner), CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (files of other owners,
// whatever their mode), CAP_FOWNER (chmod/utimes on files it does not own)
// and CAP_FSETID (keeping the set-gid bit, which the server allows on
// directories). Every other role keeps nothing.
std::vector<cap_value_t> kept_capabilities(ThreadRole role, bool serves_as_root);

struct ThreadPrivileges {
    std::optional<UserSpec> user;   // switch to it first
    std::vector<cap_value_t> keep;  // effective and permitted; inheritable, ambient: none
};

// For the calling thread: when it holds CAP_SETPCAP, locks securebits so
// that uid 0 means no privilege and empties its bounding set; then switches
// to `user` if any (raw system calls: glibc's setresuid would change every
// thread at once, including those already under a filter that forbids it);
// then keeps only `keep` and clears the ambient set.
Result<void> drop_thread_privileges(const ThreadPrivileges& p);

}  // namespace kvmsandbox::hardening
