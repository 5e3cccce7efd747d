// What each thread of the VM process may ask of the kernel once its set-up is
// done: one allow-list per thread role, as plain data. seccomp_filter.h turns
// a policy into a loaded filter; keeping the lists apart from libseccomp
// lets unit tests check them without installing anything.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/thread_role.h"

namespace kvmsandbox::hardening {

// One allowed system call. Without a condition any arguments pass; with one,
// the call passes only when (argument `arg` & mask) equals one of `values`
// (ioctl request numbers, socket domains, "no PROT_EXEC").
struct SyscallRule {
    std::string name;
    int arg = -1;  // -1: unconditional
    uint64_t mask = 0;
    std::vector<uint64_t> values;

    bool conditional() const { return arg >= 0; }
};

struct SeccompPolicy {
    ThreadRole role;
    std::vector<SyscallRule> rules;  // one rule per system call name

    const SyscallRule* find(std::string_view name) const;
    bool allows(std::string_view name) const { return find(name) != nullptr; }
    // For ioctl-like rules: is this value one the condition accepts?
    bool allows_value(std::string_view name, uint64_t value) const;
};

SeccompPolicy seccomp_policy(ThreadRole role);

// What no thread of ours ever needs and an escaped guest would want first;
// unit tests check that no role allows any of them.
const std::vector<std::string>& never_allowed_syscalls();

}  // namespace kvmsandbox::hardening
