#include "app/console_run.h"

#include <unistd.h>

#include <cstdlib>

#include "boot/guest_init_blob.h"
#include "boot/initramfs.h"
#include "boot/kernel_check.h"
#include "protocol/guest_config.h"

namespace kvmsandbox::app {

namespace {

constexpr int kExitOwnError = 125;

// Whatever init the user boots, the ACPI power button is how a PC is asked
// to shut down; a triple fault is the guest's failure, not ours.
class ConsoleWorkload : public Workload {
  public:
    void request_shutdown(Machine& m) override { m.press_power_button(); }
    Outcome outcome(const StopStatus& st) override {
        switch (st.reason) {
            case StopReason::Poweroff:
            case StopReason::Reset:
                return {0, st.message};
            case StopReason::HostRequest:
                return {st.signal ? 128 + st.signal : 0, st.message};
            case StopReason::TripleFault:
                return {1, st.message};
            default:
                return {kExitOwnError, st.message};
        }
    }
};

// Our initramfs loads the drivers, mounts the first disk as the root and
// hands PID 1 to its init (see guest-init's boot_disk_root). The first disk,
// whatever else the guest has, is vda: disks are the first virtio-blk devices
// on the bus, in the order given.
Result<std::vector<uint8_t>> disk_root_initramfs(const ConsoleRequest& req,
                                                 const KernelPlan& plan) {
    GuestRunSpec spec;
    spec.argv = {req.init};
    const char* term = std::getenv("TERM");
    spec.env = {"HOME=/", "TERM=" + std::string(term ? term : "linux"),
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    spec.cwd = "/";
    spec.hostname = req.vm.name.empty() ? "kvmsandbox" : req.vm.name;
    spec.net = guest_net_spec(req.vm.devices);
    spec.boot_root = GuestRunSpec::BootRoot{"/dev/vda", "ext4"};
    std::vector<InitramfsModule> modules;
    for (const auto& mod : plan.modules) {
        spec.modules.push_back(mod.file_name());
        modules.push_back({mod.file_name(), mod.absolute_path});
    }
    return build_sandbox_initramfs(guest_init_binary(), modules, encode_guest_config(spec));
}

}  // namespace

Result<Outcome> run_console(const ConsoleRequest& req) {
    KS_TRY(check_request(req.vm));
    KS_TRY_ASSIGN(const std::string kernel, kernel_for(req.vm));
    MachineConfig cfg;
    cfg.extra_cmdline = req.vm.params;
    cfg.console_in = STDIN_FILENO;
    cfg.console_out = STDOUT_FILENO;
    if (req.initrd.empty()) {
        KS_TRY_ASSIGN(auto plan,
                      plan_kernel(kernel, "/lib/modules", device_modules(req.vm.devices)));
        KS_TRY_ASSIGN(cfg.initrd_data, disk_root_initramfs(req, plan));
        cfg.kernel_path = plan.kernel_path;
    } else {
        cfg.kernel_path = kernel;
        cfg.initrd_path = req.initrd;
    }
    ConsoleWorkload workload;
    return launch(req.vm, std::move(cfg), workload);
}

}  // namespace kvmsandbox::app
