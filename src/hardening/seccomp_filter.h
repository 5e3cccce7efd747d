// Loads a SeccompPolicy (seccomp_policy.h) as the calling thread's seccomp
// filter, and reports a forbidden call in one line before the process dies.
#pragma once

#include "base/result.h"
#include "hardening/seccomp_policy.h"

namespace kvmsandbox::hardening {

// Exit status of a process killed for a forbidden system call: kvmsandbox's
// own failure, as far as the caller can tell.
inline constexpr int kSeccompExitCode = 125;

// Installs the SIGSYS handler that turns a trapped call into
//   kvmsandbox: seccomp: forbidden system call NAME (NR) in ROLE thread
// on stderr and _exit(125). Builds the table of system call names it prints
// from (the handler may not call libseccomp: it allocates). Idempotent.
Result<void> install_sigsys_reporter();

// Sets no_new_privs and loads `policy` for the calling thread only (no
// TSYNC: every thread loads its own role's list). Anything else traps.
Result<void> install_seccomp_filter(const SeccompPolicy& policy);

}  // namespace kvmsandbox::hardening
