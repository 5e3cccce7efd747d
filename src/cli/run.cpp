// `kvmsandbox run`: a general VM. Without --initrd: a shell on this terminal
// in a VM that sees the host's system read-only (the sandbox's VM, running
// the user's shell), as `lkvm run` does. With --initrd: that kernel and
// initrd, the serial console on this terminal; with --disk and no --initrd,
// the system on the first disk. Parsing only: app/ builds the VM.
#include <sys/stat.h>

#include <cstdlib>
#include <memory>

#include "app/console_run.h"
#include "app/sandbox_run.h"
#include "cli/command.h"
#include "cli/sandbox.h"

namespace kvmsandbox::cli {

namespace {

struct RunOptions {
    VmOptions vm;
    std::string initrd;
    std::string init = "/sbin/init";
};

// The user's shell when it is an absolute path to an executable, else sh.
std::string user_shell() {
    const char* sh = std::getenv("SHELL");
    struct stat st {};
    if (sh && *sh == '/' && ::stat(sh, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
        return sh;
    return "/bin/sh";
}

Result<app::Outcome> run_vm(const RunOptions& o) {
    const bool disk_root = o.initrd.empty() && !o.vm.devices.disks.empty() && o.vm.rootfs.empty();
    if (o.initrd.empty() && !disk_root) {
        KS_TRY_ASSIGN(auto req, sandbox_request(o.vm, {user_shell()}, "run", 0));
        return app::run_sandbox(req);
    }
    if (!o.vm.rootfs.empty())
        return fail("--rootfs boots our own init; it cannot be combined with --initrd");
    app::ConsoleRequest req;
    KS_TRY_ASSIGN(req.vm, vm_request(o.vm, "run"));
    req.initrd = o.initrd;
    req.init = o.init;
    return app::run_console(req);
}

}  // namespace

void add_run_command(CLI::App& app, Dispatch& d) {
    auto opts = std::make_shared<RunOptions>();
    opts->vm.mem = "512M";
    auto* sub = app.add_subcommand(
        "run",
        "Start a VM: a shell with the host's system read-only, the system on --disk IMG, or "
        "--kernel/--initrd; the last two on the serial console");
    sub->add_option("-k,--kernel", opts->vm.kernel,
                    "Kernel image (bzImage); default: the host's from /boot")
        ->check(CLI::ExistingFile);
    sub->add_option("-i,--initrd", opts->initrd, "Initial ramdisk")->check(CLI::ExistingFile);
    sub->add_option("-p,--params", opts->vm.params, "Extra kernel command line parameters");
    sub->add_option("-c,--cpus", opts->vm.cpus, "Number of vCPUs")->check(CLI::Range(1u, 255u));
    sub->add_option("-m,--mem", opts->vm.mem, "Guest memory, e.g. 512M or 2G (bare number: MiB)");
    sub->add_option("-n,--name", opts->vm.name, "Instance name (default: generated)");
    sub->add_flag("--balloon", opts->vm.balloon,
                  "Add a virtio-balloon device (kvmsandbox balloon)");
    // One value per occurrence: a list option would swallow "--" and the
    // command after it.
    sub->add_option("--share", opts->vm.shares, "Without --initrd: share HOST[:GUEST][:ro] too")
        ->allow_extra_args(false);
    sub->add_option("--rootfs", opts->vm.rootfs,
                    "Without --initrd: boot with the root made by 'kvmsandbox setup NAME'");
    sub->add_option("--console-log", opts->vm.console_log,
                    "Without --initrd: keep kernel and init messages in FILE");
    sub->add_option("--init", opts->init,
                    "With --disk and no --initrd: the disk's init (default /sbin/init)");
    add_device_options(*sub, opts->vm.devices, "user");
    add_hardening_options(*sub, opts->vm.hardening);
    sub->add_flag("-v,--verbose", opts->vm.verbose, "Print what the VMM does on stderr");
    sub->callback([&d, opts] { d.action = [opts] { return finish_launch(run_vm(*opts)); }; });
}

}  // namespace kvmsandbox::cli
