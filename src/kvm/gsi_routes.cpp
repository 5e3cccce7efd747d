#include "kvm/gsi_routes.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "kvm/ioctls.h"
#include "kvm/vm.h"

namespace kvmsandbox {

Result<uint32_t> GsiRoutes::allocate_msi() {
    std::lock_guard lock(mu_);
    if (next_gsi_ >= kMaxGsi) return fail("out of interrupt routes (GSIs)");
    uint32_t gsi = next_gsi_++;
    msis_.push_back(Msi{gsi, 0, 0, true});
    return gsi;
}

Result<void> GsiRoutes::set_msi(uint32_t gsi, uint64_t addr, uint32_t data, bool masked) {
    std::lock_guard lock(mu_);
    for (auto& m : msis_) {
        if (m.gsi != gsi) continue;
        m.addr = addr;
        m.data = data;
        m.masked = masked;
        return commit_locked();
    }
    return failf("GSI {} was never allocated", gsi);
}

Result<void> GsiRoutes::commit_locked() {
    std::vector<kvm_irq_routing_entry> entries;
    // KVM's default table: GSI 0-15 on both PICs (master 0-7, slave 8-15) and
    // GSI 0-23 on the IOAPIC; GSI 2 is the IOAPIC's timer pin, not the cascade.
    for (uint32_t gsi = 0; gsi < 16; ++gsi) {
        if (gsi == 2) continue;
        kvm_irq_routing_entry e{};
        e.gsi = gsi;
        e.type = KVM_IRQ_ROUTING_IRQCHIP;
        e.u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
        e.u.irqchip.pin = gsi % 8;
        entries.push_back(e);
    }
    for (uint32_t gsi = 0; gsi < kFirstMsiGsi; ++gsi) {
        kvm_irq_routing_entry e{};
        e.gsi = gsi;
        e.type = KVM_IRQ_ROUTING_IRQCHIP;
        e.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        e.u.irqchip.pin = gsi;
        entries.push_back(e);
    }
    for (const auto& m : msis_) {
        if (m.masked) continue;
        kvm_irq_routing_entry e{};
        e.gsi = m.gsi;
        e.type = KVM_IRQ_ROUTING_MSI;
        e.u.msi.address_lo = static_cast<uint32_t>(m.addr);
        e.u.msi.address_hi = static_cast<uint32_t>(m.addr >> 32);
        e.u.msi.data = m.data;
        entries.push_back(e);
    }
    const auto n = static_cast<uint32_t>(entries.size());
    kvm_ioctl::FlexArray<kvm_irq_routing_entry> arr(n, n);
    for (uint32_t i = 0; i < n; ++i) arr.set(i, entries[i]);
    if (::ioctl(vm_.fd(), kvm_ioctl::kSetGsiRouting, arr.data()) < 0)
        return fail_errno("KVM_SET_GSI_ROUTING");
    return {};
}

}  // namespace kvmsandbox
