// One KVM vCPU: its fd, its shared kvm_run area, and the register set-up
// calls. The run loop itself lives in vmm/, which knows the buses.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/mmap.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "kvm/kvm.h"
#include "kvm/vm.h"

namespace kvmsandbox {

class Vcpu {
  public:
    static Result<Vcpu> create(const Kvm& kvm, Vm& vm, unsigned id);

    unsigned id() const { return id_; }
    int fd() const { return fd_.get(); }
    kvm_run* run_area() const { return reinterpret_cast<kvm_run*>(run_.data()); }

    Result<void> set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    Result<void> set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
    Result<void> set_fpu_defaults();
    // LINT0 as ExtINT (the legacy PIC) and LINT1 as NMI, as firmware leaves
    // them on a PC; Linux relies on it for early interrupts.
    Result<void> set_lapic_lints();
    Result<kvm_regs> get_regs() const;
    Result<void> set_regs(const kvm_regs& r);
    Result<kvm_sregs> get_sregs() const;
    Result<void> set_sregs(const kvm_sregs& s);
    // Queues an NMI (the guest kernel prints its state on an unexpected one).
    Result<void> nmi();
    // Tells a kvmclock guest it was stopped by the host, so its soft-lockup
    // watchdog does not fire over the paused time. Fails harmlessly (EINVAL)
    // when the guest does not use kvmclock.
    Result<void> kvmclock_ctrl();

    // One KVM_RUN. Returns false with errno == EINTR/EAGAIN when interrupted.
    int run_once() const;

  private:
    Vcpu(unsigned id, UniqueFd fd, Mmap run) : id_(id), fd_(std::move(fd)), run_(std::move(run)) {}
    unsigned id_;
    UniqueFd fd_;
    Mmap run_;
};

}  // namespace kvmsandbox
