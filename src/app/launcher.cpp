#include "app/launcher.h"

#include <sys/resource.h>

#include <memory>

#include "app/kvm_check.h"
#include "boot/kernel_locator.h"
#include "boot/kernel_unpack.h"
#include "control/instance_dir.h"
#include "control/vm_service.h"
#include "virtio/balloon/balloon.h"
#include "vmm/kernel_loader.h"

namespace kvmsandbox::app {

namespace {

// Each open 9p fid may hold host fds; the default soft limit of 1024 would
// cap a guest's open files far below what builds use.
void raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
}

Result<control::InstanceClaim> claim_name(const std::string& name) {
    KS_TRY_ASSIGN(auto dir, control::instance_dir());
    if (name.empty()) return control::claim_unique_instance(dir);
    if (auto v = control::validate_instance_name(name); !v)
        return fail("--name: " + v.error().message);
    return control::claim_instance(dir, name);
}

}  // namespace

Result<void> check_request(const VmRequest& req) {
    if (auto r = check_guest_memory(req.mem_bytes); !r) return fail("--mem " + r.error().message);
    if (auto r = check_vcpu_count(req.cpus); !r) return fail("--cpus " + r.error().message);
    return {};
}

Result<std::string> kernel_for(const VmRequest& req) {
    if (!req.kernel.empty()) return req.kernel;
    return find_default_kernel(host_kernel_search());
}

Result<Outcome> launch(const VmRequest& req, MachineConfig cfg, Workload& workload) {
    cfg.cpus = req.cpus;
    cfg.mem_bytes = req.mem_bytes;
    cfg.name = req.name;
    // The name is taken before anything slow, so a clash is reported at once.
    KS_TRY_ASSIGN(auto claim, claim_name(req.name));
    KS_TRY(check_host_kvm(req.argv));
    if (kvm_device_present() && cfg.vmlinux_path.empty())
        cfg.vmlinux_path = unpacked_kernel_for(cfg.kernel_path);
    raise_fd_limit();

    // Before the first helper thread (the worker pool) starts.
    KS_TRY(hardening::arm_hardening(req.hardening));
    KS_TRY_ASSIGN(auto machine, Machine::create(cfg));
    Machine& m = *machine;
    KS_TRY(workload.attach_early(m));

    WorkerPool pool(4);
    hardening::HardeningGate hardening_gate;  // right after the pool: see its header
    KS_TRY(workload.attach(m, pool));
    KS_TRY(attach_devices(m, req.devices, pool));
    VirtioBalloon* balloon = nullptr;
    if (req.balloon) {
        auto dev = std::make_unique<VirtioBalloon>(m.memory(), req.mem_bytes);
        balloon = dev.get();
        KS_TRY(m.add_virtio_device(std::move(dev)));
    }
    KS_TRY(workload.before_run(m));

    control::VmService service(m, {claim.name(), req.kind}, balloon,
                               [&] { workload.request_shutdown(m); });
    service.set_on_resume([&] { workload.after_resume(m); });
    KS_TRY(service.listen(claim.socket_path()));
    // Everything is open: from here every thread drops its privileges and
    // loads its filter before it handles anything from the guest.
    KS_TRY(hardening_gate.commit());
    auto st = m.run();
    service.close();  // the socket goes while the name is still ours
    workload.after_run();
    if (!st) return std::unexpected(st.error());
    return workload.outcome(*st);
}

}  // namespace kvmsandbox::app
