// A KVM virtual machine: memory slots, in-kernel interrupt controllers and
// interrupt injection.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "base/unique_fd.h"
#include "kvm/kvm.h"

namespace kvmsandbox {

class Vm {
  public:
    static Result<Vm> create(const Kvm& kvm);

    int fd() const { return fd_.get(); }
    Result<void> add_memory_slot(uint32_t slot, uint64_t gpa, uint64_t size, void* host);
    // In-kernel PIC+IOAPIC+LAPICs and PIT: interrupts and timers without
    // exits to user space.
    Result<void> create_irqchip_and_pit();
    Result<void> set_tss_addr(uint64_t addr);
    // Level of a legacy IRQ line (routed to PIC and IOAPIC by KVM's default routing).
    Result<void> set_irq_line(uint32_t irq, bool level);
    // The guest's kvmclock (ns): saved at pause and restored at resume so
    // the guest's clocks do not count the time it was stopped.
    Result<uint64_t> get_clock() const;
    Result<void> set_clock(uint64_t ns);
    Result<UniqueFd> create_vcpu(unsigned id);

    // An eventfd that, when written, injects `gsi` (device interrupt without
    // going through a vCPU thread).
    Result<void> add_irqfd(int eventfd, uint32_t gsi);
    Result<void> remove_irqfd(int eventfd, uint32_t gsi);
    // An eventfd that KVM signals when the guest writes `len` bytes at `addr`
    // (MMIO or port I/O), instead of exiting to our vCPU thread.
    Result<void> add_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio);
    Result<void> remove_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio);

  private:
    explicit Vm(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace kvmsandbox
