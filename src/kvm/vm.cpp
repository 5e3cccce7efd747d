#include "kvm/vm.h"

#include <sys/ioctl.h>

namespace kvmsandbox {

Result<Vm> Vm::create(const Kvm& kvm) {
    KS_TRY_ASSIGN(auto fd, kvm.create_vm());
    return Vm(std::move(fd));
}

Result<void> Vm::add_memory_slot(uint32_t slot, uint64_t gpa, uint64_t size, void* host) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return fail_errno(
            fmt::format("KVM_SET_USER_MEMORY_REGION slot {} ({:#x}+{:#x})", slot, gpa, size));
    return {};
}

Result<void> Vm::create_irqchip_and_pit() {
    if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return fail_errno("KVM_CREATE_IRQCHIP");
    kvm_pit_config pit{};
    if (::ioctl(fd_.get(), KVM_CREATE_PIT2, &pit) < 0) return fail_errno("KVM_CREATE_PIT2");
    return {};
}

Result<void> Vm::set_tss_addr(uint64_t addr) {
    if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, addr) < 0) return fail_errno("KVM_SET_TSS_ADDR");
    return {};
}

Result<void> Vm::set_irq_line(uint32_t irq, bool level) {
    kvm_irq_level l{};
    l.irq = irq;
    l.level = level ? 1 : 0;
    if (::ioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0) return fail_errno("KVM_IRQ_LINE");
    return {};
}

Result<uint64_t> Vm::get_clock() const {
    kvm_clock_data d{};
    if (::ioctl(fd_.get(), KVM_GET_CLOCK, &d) < 0) return fail_errno("KVM_GET_CLOCK");
    return d.clock;
}

Result<void> Vm::set_clock(uint64_t ns) {
    kvm_clock_data d{};
    d.clock = ns;
    if (::ioctl(fd_.get(), KVM_SET_CLOCK, &d) < 0) return fail_errno("KVM_SET_CLOCK");
    return {};
}

Result<UniqueFd> Vm::create_vcpu(unsigned id) {
    int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0) return fail_errno(fmt::format("KVM_CREATE_VCPU {}", id));
    return UniqueFd(fd);
}

Result<void> Vm::add_irqfd(int eventfd, uint32_t gsi) {
    kvm_irqfd f{};
    f.fd = static_cast<uint32_t>(eventfd);
    f.gsi = gsi;
    if (::ioctl(fd_.get(), KVM_IRQFD, &f) < 0) return fail_errno("KVM_IRQFD");
    return {};
}

Result<void> Vm::remove_irqfd(int eventfd, uint32_t gsi) {
    kvm_irqfd f{};
    f.fd = static_cast<uint32_t>(eventfd);
    f.gsi = gsi;
    f.flags = KVM_IRQFD_FLAG_DEASSIGN;
    if (::ioctl(fd_.get(), KVM_IRQFD, &f) < 0) return fail_errno("KVM_IRQFD deassign");
    return {};
}

namespace {
kvm_ioeventfd make_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio) {
    kvm_ioeventfd e{};
    e.fd = eventfd;
    e.addr = addr;
    e.len = len;
    e.flags = pio ? KVM_IOEVENTFD_FLAG_PIO : 0;
    return e;
}
}  // namespace

Result<void> Vm::add_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio) {
    auto e = make_ioeventfd(eventfd, addr, len, pio);
    if (::ioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0)
        return fail_errno(fmt::format("KVM_IOEVENTFD at {:#x}", addr));
    return {};
}

Result<void> Vm::remove_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio) {
    auto e = make_ioeventfd(eventfd, addr, len, pio);
    e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    if (::ioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0) return fail_errno("KVM_IOEVENTFD deassign");
    return {};
}

}  // namespace kvmsandbox
