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
#include "base/worker_pool.h"
#include "cli/command.h"
#include "cli/devices.h"
#include "cli/instance.h"
#include "cli/sandbox.h"
#include "control/vm_service.h"
#include "protocol/guest_config.h"
#include "boot/guest_init_blob.h"
#include "hardening/hardening.h"
#include "boot/initramfs.h"
#include "boot/kernel_check.h"
#include "boot/kernel_locator.h"
#include "boot/kernel_unpack.h"
#include "virtio/balloon/balloon.h"
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
    std::string init = "/sbin/init";
    DeviceArgs devices;
    HardeningArgs hardening;
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
    so.devices = o.devices;
    so.hardening = o.hardening;
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

int own_error(const std::string& msg) {
    log::error("{}", msg);
    return kExitOwnError;
}

// A VM whose serial console is this terminal: the user's own kernel and
// initrd, or a system booted from a disk. `cfg` has the kernel and initrd.
int run_on_console(const RunOptions& o, MachineConfig cfg, const DevicePlan& devices) {
    if (kvm_reachable(cfg.kvm_unusable_reason))
        cfg.vmlinux_path = unpacked_kernel_for(cfg.kernel_path);
    cfg.cpus = o.cpus;
    cfg.name = o.name;
    auto mem = parse_size(o.mem);
    if (!mem) return own_error("--mem: " + mem.error().message);
    cfg.mem_bytes = *mem;
    cfg.console_in = STDIN_FILENO;
    cfg.console_out = STDOUT_FILENO;

    auto hardening = plan_hardening(o.hardening);
    if (!hardening) return own_error(hardening.error().message);
    auto claim = claim_instance_name(o.name);
    if (!claim) return own_error(claim.error().message);
    // Before the first helper thread (the worker pool) starts.
    if (auto r = sandbox::arm_hardening(*hardening); !r) return own_error(r.error().message);
    auto machine = Machine::create(cfg);
    if (!machine) {
        log::error("{}", machine.error().message);
        return machine.error().exit_code;
    }
    Machine& m = **machine;
    WorkerPool pool(4);
    sandbox::HardeningGate hardening_gate;  // right after the pool: see its header
    if (auto r = attach_devices(m, devices, pool); !r) return own_error(r.error().message);
    VirtioBalloon* balloon = nullptr;
    if (o.balloon) {
        auto dev = std::make_unique<VirtioBalloon>(m.memory(), *mem);
        balloon = dev.get();
        if (auto r = m.add_virtio_device(std::move(dev)); !r) return own_error(r.error().message);
    }
    // Whatever init the user boots, the ACPI power button is how a PC is
    // asked to shut down.
    control::VmService service(m, {claim->name(), "run"}, balloon,
                               [&m] { m.press_power_button(); });
    if (auto r = service.listen(claim->socket_path()); !r) return own_error(r.error().message);
    if (auto r = hardening_gate.commit(); !r) return own_error(r.error().message);
    auto st = m.run();
    service.close();
    if (!st) {
        log::error("{}", st.error().message);
        return st.error().exit_code;
    }
    if (!st->message.empty()) log::error("{}", st->message);
    return exit_code_for(*st);
}

Result<std::string> kernel_or_default(const std::string& kernel) {
    if (!kernel.empty()) return kernel;
    return find_default_kernel(host_kernel_search());
}

// run --disk IMG: our initramfs loads the drivers, mounts the first disk as
// the root and hands PID 1 to its init (see guest-init's boot_disk_root).
int run_disk_root(const RunOptions& o, const DevicePlan& devices) {
    auto kernel = kernel_or_default(o.kernel);
    if (!kernel) return own_error(kernel.error().message);
    auto plan = plan_kernel(*kernel, "/lib/modules", device_modules(devices));
    if (!plan) return own_error(plan.error().message);
    GuestRunSpec spec;
    spec.argv = {o.init};
    spec.env = {"HOME=/",
                "TERM=" + std::string(std::getenv("TERM") ? std::getenv("TERM") : "linux"),
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    spec.cwd = "/";
    spec.hostname = o.name.empty() ? "kvmsandbox" : o.name;
    spec.net = guest_net_spec(devices);
    // The first disk, whatever else the guest has, is vda: disks are the
    // first virtio-blk devices on the bus, in the order given.
    spec.boot_root = GuestRunSpec::BootRoot{"/dev/vda", "ext4"};
    std::vector<InitramfsModule> modules;
    for (const auto& mod : plan->modules) {
        spec.modules.push_back(mod.file_name());
        modules.push_back({mod.file_name(), mod.absolute_path});
    }
    auto initrd = build_sandbox_initramfs(guest_init_binary(), modules, encode_guest_config(spec));
    if (!initrd) return own_error(initrd.error().message);
    MachineConfig cfg;
    cfg.kernel_path = plan->kernel_path;
    cfg.initrd_data = std::move(*initrd);
    cfg.extra_cmdline = o.params;
    cfg.kvm_unusable_reason = kvm_unusable_reason(original_argv());
    return run_on_console(o, std::move(cfg), devices);
}

int run_vm(const RunOptions& o) {
    log::verbose_flag() = o.verbose;
    auto devices = plan_devices(o.devices);
    if (!devices) return own_error(devices.error().message);
    if (o.initrd.empty()) {
        if (!devices->disks.empty() && o.rootfs.empty()) {
            if (auto why = kvm_unusable_reason(original_argv()); !why.empty())
                return own_error(why);
            return run_disk_root(o, *devices);
        }
        return run_shell(o);
    }
    if (!o.rootfs.empty())
        return own_error("--rootfs boots our own init; it cannot be combined with --initrd");
    auto kernel = kernel_or_default(o.kernel);
    if (!kernel) {
        log::error("{}", kernel.error().message);
        return kernel.error().exit_code;
    }
    MachineConfig cfg;
    cfg.kernel_path = *kernel;
    cfg.initrd_path = o.initrd;
    cfg.extra_cmdline = o.params;
    cfg.kvm_unusable_reason = kvm_unusable_reason(original_argv());
    return run_on_console(o, std::move(cfg), *devices);
}

}  // namespace

void add_run_command(CLI::App& app, Dispatch& d) {
    auto opts = std::make_shared<RunOptions>();
    auto* sub = app.add_subcommand(
        "run",
        "Start a VM: a shell with the host's system read-only, the system on --disk IMG, or "
        "--kernel/--initrd; the last two on the serial console");
    sub->add_option("-k,--kernel", opts->kernel,
                    "Kernel image (bzImage); default: the host's from /boot")
        ->check(CLI::ExistingFile);
    sub->add_option("-i,--initrd", opts->initrd, "Initial ramdisk")->check(CLI::ExistingFile);
    sub->add_option("-p,--params", opts->params, "Extra kernel command line parameters");
    sub->add_option("-c,--cpus", opts->cpus, "Number of vCPUs")->check(CLI::Range(1u, 255u));
    sub->add_option("-m,--mem", opts->mem, "Guest memory, e.g. 512M or 2G (bare number: MiB)");
    sub->add_option("-n,--name", opts->name, "Instance name (default: generated)");
    sub->add_flag("--balloon", opts->balloon, "Add a virtio-balloon device (kvmsandbox balloon)");
    // One value per occurrence: a list option would swallow "--" and the
    // command after it.
    sub->add_option("--share", opts->shares, "Without --initrd: share HOST[:GUEST][:ro] too")
        ->allow_extra_args(false);
    sub->add_option("--rootfs", opts->rootfs,
                    "Without --initrd: boot with the root made by 'kvmsandbox setup NAME'");
    sub->add_option("--console-log", opts->console_log,
                    "Without --initrd: keep kernel and init messages in FILE");
    sub->add_option("--init", opts->init,
                    "With --disk and no --initrd: the disk's init (default /sbin/init)");
    add_device_options(*sub, opts->devices, "user");
    add_hardening_options(*sub, opts->hardening);
    sub->add_flag("-v,--verbose", opts->verbose, "Print what the VMM does on stderr");
    sub->callback([&d, opts] { d.action = [opts] { return run_vm(*opts); }; });
}

}  // namespace kvmsandbox::cli
