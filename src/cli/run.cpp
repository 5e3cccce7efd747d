// `kvmsandbox run`: boot a kernel with the serial console on this terminal.
#include <unistd.h>

#include <memory>

#include "base/log.h"
#include "base/size_parse.h"
#include "cli/command.h"
#include "sandbox/kernel_locator.h"
#include "vmm/machine.h"

namespace kvmsandbox::cli {

namespace {

struct RunOptions {
    std::string kernel, initrd, params, name, mem = "512M";
    unsigned cpus = 1;
    bool verbose = false;
};

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

    auto machine = Machine::create(cfg);
    if (!machine) {
        log::error("{}", machine.error().message);
        return machine.error().exit_code;
    }
    auto st = (*machine)->run();
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
    auto* sub =
        app.add_subcommand("run", "Boot a Linux kernel with the serial console on this terminal");
    sub->add_option("-k,--kernel", opts->kernel,
                    "Kernel image (bzImage); default: the host's from /boot")
        ->check(CLI::ExistingFile);
    sub->add_option("-i,--initrd", opts->initrd, "Initial ramdisk")->check(CLI::ExistingFile);
    sub->add_option("-p,--params", opts->params, "Extra kernel command line parameters");
    sub->add_option("-c,--cpus", opts->cpus, "Number of vCPUs")->check(CLI::Range(1u, 255u));
    sub->add_option("-m,--mem", opts->mem, "Guest memory, e.g. 512M or 2G (bare number: MiB)");
    sub->add_option("-n,--name", opts->name, "Instance name");
    sub->add_flag("-v,--verbose", opts->verbose, "Print what the VMM does on stderr");
    sub->callback([&d, opts] { d.action = [opts] { return run_vm(*opts); }; });
}

}  // namespace kvmsandbox::cli
