#include "cli/hardening_options.h"

#include <unistd.h>

namespace kvmsandbox::cli {

void add_hardening_options(CLI::App& app, HardeningArgs& args) {
    app.add_option("--seccomp", args.seccomp,
                   "Per-thread system call allow-lists once the VM runs: on (default) or off "
                   "(for debugging only)")
        ->check(CLI::IsMember({"on", "off"}));
    app.add_option("--user", args.user,
                   "When started as root: become UID[:GID] or NAME[:GROUP] once /dev/kvm, taps "
                   "and files are open (the guest command runs as that user too)");
}

Result<hardening::HardeningOptions> plan_hardening(const HardeningArgs& args) {
    hardening::HardeningOptions o;
    o.seccomp = args.seccomp != "off";
    if (!args.user.empty()) {
        if (::geteuid() != 0) return failf("--user {}: only root can switch users", args.user);
        KS_TRY_ASSIGN(auto u, hardening::parse_user_spec(args.user));
        o.user = u;
    }
    hardening::read_hardening_debug_env(o);
    return o;
}

}  // namespace kvmsandbox::cli
