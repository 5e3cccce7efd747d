// `kvmsandbox [OPTIONS] -- CMD [ARGS...]`: run a host command in a VM and
// hand back its streams and exit status as if it had run here. The options
// become an app::SandboxRequest; app/sandbox_run.h does the rest.
#include "cli/sandbox.h"

#include <memory>

#include "base/log.h"
#include "base/size_parse.h"
#include "cli/command.h"

namespace kvmsandbox::cli {

namespace {

struct SandboxOptions {
    VmOptions vm;
    std::vector<std::string> command;
    double timeout = 0;
};

}  // namespace

Result<app::VmRequest> vm_request(const VmOptions& o, const std::string& kind) {
    log::verbose_flag() = o.verbose;
    app::VmRequest r;
    // What the user typed is checked first, so a typo is named as such on
    // any host.
    KS_TRY_ASSIGN(r.devices, plan_devices(o.devices));
    KS_TRY_ASSIGN(r.hardening, plan_hardening(o.hardening));
    auto mem = parse_size(o.mem);
    if (!mem) return fail("--mem: " + mem.error().message);
    r.mem_bytes = *mem;
    r.kernel = o.kernel;
    r.params = o.params;
    r.cpus = o.cpus;
    r.name = o.name;
    r.kind = kind;
    r.balloon = o.balloon;
    r.verbose = o.verbose;
    r.argv = original_argv();
    return r;
}

Result<app::SandboxRequest> sandbox_request(const VmOptions& o, std::vector<std::string> command,
                                            const std::string& kind, double timeout) {
    app::SandboxRequest r;
    KS_TRY_ASSIGN(r.vm, vm_request(o, kind));
    r.command = std::move(command);
    for (const auto& s : o.shares) {
        KS_TRY_ASSIGN(r.shares.emplace_back(), parse_share_option(s));
    }
    r.rootfs = o.rootfs;
    r.console_log = o.console_log;
    r.timeout = timeout;
    return r;
}

int finish_launch(const Result<app::Outcome>& r) {
    if (!r) return report_error(r.error());
    if (!r->message.empty()) log::error("{}", r->message);
    return r->exit_code;
}

void add_sandbox_form(CLI::App& app, Dispatch& d) {
    auto o = std::make_shared<SandboxOptions>();
    o->vm.mem = "1G";
    o->vm.cpus = 2;
    app.add_option("command", o->command, "Command to run inside the VM (after --)");
    app.add_option("-k,--kernel", o->vm.kernel, "Guest kernel; default: the host's from /boot")
        ->check(CLI::ExistingFile);
    app.add_option("-m,--mem", o->vm.mem, "Guest memory (default 1G)");
    app.add_option("-c,--cpus", o->vm.cpus, "vCPUs (default 2)")->check(CLI::Range(1u, 254u));
    app.add_option("--timeout", o->timeout, "Stop the VM after S seconds (exit 124)")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                double s = 0;
                try {
                    s = std::stod(v);
                } catch (const std::exception&) {
                    return "'" + v + "' is not a number of seconds";
                }
                return s > 0 ? "" : "'" + v + "' must be more than 0 seconds";
            },
            "SECONDS", "seconds"));
    // One value per occurrence (also --disk, --publish): a list option would
    // swallow "--" and hand the command's own options to us.
    app.add_option("--share", o->vm.shares, "Share HOST[:GUEST][:ro] with the guest (repeatable)")
        ->allow_extra_args(false);
    add_device_options(app, o->vm.devices, "none");
    add_hardening_options(app, o->vm.hardening);
    app.add_option("--console-log", o->vm.console_log, "Keep kernel and init messages in FILE");
    app.add_option("-p,--params", o->vm.params, "Extra kernel command line parameters");
    app.add_option("-n,--name", o->vm.name,
                   "Instance name for list/stop/stat... (default: generated)");
    app.add_flag("--balloon", o->vm.balloon, "Add a virtio-balloon device (kvmsandbox balloon)");
    app.add_flag("-v,--verbose", o->vm.verbose, "Show kernel and init messages on stderr");
    app.callback([&d, o] {
        if (o->command.empty() || d.action) return;
        d.action = [o] {
            auto req = sandbox_request(o->vm, o->command, "sandbox", o->timeout);
            if (!req) return report_error(req.error());
            return finish_launch(app::run_sandbox(*req));
        };
    });
}

}  // namespace kvmsandbox::cli
