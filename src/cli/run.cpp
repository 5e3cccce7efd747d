// `kvmsandbox run`: a general VM. Without --initrd: a shell on this terminal
// in a VM that sees the host's system read-only (the sandbox's VM, running
// the user's shell), as `lkvm run` does. With --initrd: that kernel and
// initrd, the serial console on this terminal.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "base/log.h"
#include "base/size_parse.h"
#include "cli/command.h"
#include "cli/instance.h"
#include "cli/sandbox.h"
#include "control/vm_service.h"
#include "sandbox/kernel_locator.h"
#include "virtio/balloon.h"
#include "vmm/machine.h"

namespace kvmsandbox::cli {

namespace {

struct RunOptions {
    std::string kernel, initrd, params, name, mem = "512M";
    unsigned cpus = 1;
    bool verbose = false;
    bool balloon = false;
    std::vector<std::string> shares;
    std::string console_log;
    std::string rootfs;
};

// The user's shell when it is an absolute path to an executable, else sh.
std::string user_shell() {
    const char* sh = std::getenv("SHELL");
    struct stat st {};
    if (sh && *sh == '/' && ::stat(sh, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
        return sh;
    return "/bin/sh";
}

int run_shell(const RunOptions& o) {
    SandboxOptions so;
    so.command = {user_shell()};
    so.kernel = o.kernel;
    so.mem = o.mem;
    so.cpus = o.cpus;
    so.name = o.name;
    so.balloon = o.balloon;
    so.shares = o.shares;
    so.console_log = o.console_log;
    so.params = o.params;
    so.rootfs = o.rootfs;
    so.verbose = o.verbose;
    so.kind = "run";
    return run_sandbox(so);
}

int exit_code_for(const StopStatus& st) {
    switch (st.reason) {
        case StopReason::Poweroff:
        case StopReason::Reset:
            return 0;
        case StopReason::HostRequest:
            return st.signal ? 128 + st.signal : 0;
        case StopReason::TripleFault:
            return 1;
        default:
            return kExitOwnError;
    }
}

int run_vm(const RunOptions& o) {
    if (o.initrd.empty()) return run_shell(o);
    if (!o.rootfs.empty()) {
        log::error("--rootfs boots our own init; it cannot be combined with --initrd");
        return kExitOwnError;
    }
    log::verbose_flag() = o.verbose;
    MachineConfig cfg;
    cfg.kernel_path = o.kernel;
    if (cfg.kernel_path.empty()) {
        auto k = find_default_kernel(host_kernel_search());
        if (!k) {
            log::error("{}", k.error().message);
            return k.error().exit_code;
        }
        cfg.kernel_path = *k;
    }
    cfg.initrd_path = o.initrd;
    cfg.extra_cmdline = o.params;
    cfg.cpus = o.cpus;
    cfg.name = o.name;
    auto mem = parse_size(o.mem);
    if (!mem) {
        log::error("--mem: {}", mem.error().message);
        return kExitOwnError;
    }
    cfg.mem_bytes = *mem;
    cfg.console_in = STDIN_FILENO;
    cfg.console_out = STDOUT_FILENO;
    cfg.kvm_unusable_reason = kvm_unusable_reason(original_argv());

    auto claim = claim_instance_name(o.name);
    if (!claim) {
        log::error("{}", claim.error().message);
        return kExitOwnError;
    }
    auto machine = Machine::create(cfg);
    if (!machine) {
        log::error("{}", machine.error().message);
        return machine.error().exit_code;
    }
    Machine& m = **machine;
    VirtioBalloon* balloon = nullptr;
    if (o.balloon) {
        auto dev = std::make_unique<VirtioBalloon>(m.memory(), *mem);
        balloon = dev.get();
        if (auto r = m.add_virtio_device(std::move(dev)); !r) {
            log::error("{}", r.error().message);
            return kExitOwnError;
        }
    }
    // Whatever init the user boots, the ACPI power button is how a PC is
    // asked to shut down.
    control::VmService service(m, {claim->name(), "run"}, balloon,
                               [&m] { m.press_power_button(); });
    if (auto r = service.listen(claim->socket_path()); !r) {
        log::error("{}", r.error().message);
        return kExitOwnError;
    }
    auto st = m.run();
    service.close();
    if (!st) {
        log::error("{}", st.error().message);
        return st.error().exit_code;
    }
    if (!st->message.empty()) log::error("{}", st->message);
    return exit_code_for(*st);
}

}  // namespace

void add_run_command(CLI::App& app, Dispatch& d) {
    auto opts = std::make_shared<RunOptions>();
    auto* sub = app.add_subcommand(
        "run",
        "Start a VM: a shell with the host's system read-only, or --kernel/--initrd on the "
        "serial console");
    sub->add_option("-k,--kernel", opts->kernel,
                    "Kernel image (bzImage); default: the host's from /boot")
        ->check(CLI::ExistingFile);
    sub->add_option("-i,--initrd", opts->initrd, "Initial ramdisk")->check(CLI::ExistingFile);
    sub->add_option("-p,--params", opts->params, "Extra kernel command line parameters");
    sub->add_option("-c,--cpus", opts->cpus, "Number of vCPUs")->check(CLI::Range(1u, 255u));
    sub->add_option("-m,--mem", opts->mem, "Guest memory, e.g. 512M or 2G (bare number: MiB)");
    sub->add_option("-n,--name", opts->name, "Instance name (default: generated)");
    sub->add_flag("--balloon", opts->balloon, "Add a virtio-balloon device (kvmsandbox balloon)");
    sub->add_option("--share", opts->shares, "Without --initrd: share HOST[:GUEST][:ro] too");
    sub->add_option("--rootfs", opts->rootfs,
                    "Without --initrd: boot with the root made by 'kvmsandbox setup NAME'");
    sub->add_option("--console-log", opts->console_log,
                    "Without --initrd: keep kernel and init messages in FILE");
    sub->add_flag("-v,--verbose", opts->verbose, "Print what the VMM does on stderr");
    sub->callback([&d, opts] { d.action = [opts] { return run_vm(*opts); }; });
}

}  // namespace kvmsandbox::cli
