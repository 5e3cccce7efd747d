// virtio-pci's interrupt side: queue and configuration interrupts through
// the MSI-X table (vectors the driver programs, masks, the pending bits) or,
// before the driver enables MSI-X, the INTx line with the ISR register. Split
// from virtio_pci.cpp (registers, capabilities, config space); same class,
// same lock (mu_), same rules: the guest programs the table, so every vector
// number and address is checked before it is used.
#include "virtio/transport/virtio_pci.h"

#include <linux/pci_regs.h>

#include <algorithm>
#include <cstring>

namespace kvmsandbox {

namespace {

// The ISR's queue-interrupt bit (virtio 1.x 4.1.4.5); the uapi header only
// names the configuration-change bit (VIRTIO_PCI_ISR_CONFIG).
constexpr uint8_t kIsrQueue = 0x1;

// x86 MSI messages target the local APIC window; anything else cannot be a
// real interrupt, so such a vector is treated as masked.
bool valid_msi_address(uint64_t addr) {
    return (addr >> 20) == 0xfee;
}

}  // namespace

uint16_t VirtioPciDevice::check_vector_locked(uint16_t vector) const {
    // The spec's way to refuse a vector: it reads back as NO_VECTOR.
    return vector < nvectors_ ? vector : VIRTIO_MSI_NO_VECTOR;
}

// ---- interrupts -------------------------------------------------------------

void VirtioPciDevice::signal_queue(uint16_t q) {
    std::lock_guard lock(mu_);
    if (!active_ || q >= nqueues_) return;
    if (msix_enabled_) {
        deliver_locked(qregs_[q].vector);
    } else {
        isr_ |= kIsrQueue;
        update_intx_locked();
    }
}

void VirtioPciDevice::signal_config() {
    std::lock_guard lock(mu_);
    ++config_generation_;
    if (!(status_ & VIRTIO_CONFIG_S_DRIVER_OK)) return;
    if (msix_enabled_) {
        deliver_locked(msix_config_);
    } else {
        isr_ |= VIRTIO_PCI_ISR_CONFIG;
        update_intx_locked();
    }
}

void VirtioPciDevice::set_needs_reset() {
    std::lock_guard lock(mu_);
    if (status_ & VIRTIO_CONFIG_S_NEEDS_RESET) return;
    status_ |= VIRTIO_CONFIG_S_NEEDS_RESET;
    if (!(status_ & VIRTIO_CONFIG_S_DRIVER_OK)) return;
    // The spec asks for a configuration change notification.
    if (msix_enabled_) {
        deliver_locked(msix_config_);
    } else {
        isr_ |= VIRTIO_PCI_ISR_CONFIG;
        update_intx_locked();
    }
}

VirtioDevice::Counters VirtioPciDevice::transport_counters() const {
    VirtioDevice::Counters c{{"interrupts", interrupts_.load(std::memory_order_relaxed)}};
    for (size_t q = 0; q < queues_.size(); ++q) {
        c.emplace_back(fmt::format("q{}_chains", q), queues_[q]->chains_popped());
        if (uint64_t e = queues_[q]->errors()) c.emplace_back(fmt::format("q{}_errors", q), e);
    }
    return c;
}

bool VirtioPciDevice::vector_masked_locked(uint16_t vector) const {
    const MsixEntry& e = msix_table_[vector];
    const uint64_t addr = (uint64_t{e.addr_hi} << 32) | e.addr_lo;
    return !msix_enabled_ || msix_function_masked_ || (e.ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT) ||
           !valid_msi_address(addr);
}

void VirtioPciDevice::deliver_locked(uint16_t vector) {
    if (vector >= nvectors_) return;  // NO_VECTOR: the driver wants no interrupt
    if (vector_masked_locked(vector)) {
        msix_pending_[vector] = true;
    } else if (msi_) {
        interrupts_.fetch_add(1, std::memory_order_relaxed);
        msi_->signal_msi(vector);
    }
}

// Tells the router about a vector whose effective state changed, and fires
// an interrupt that was held pending while it was masked.
void VirtioPciDevice::update_vector_locked(uint16_t vector) {
    const MsixEntry& e = msix_table_[vector];
    RouteState now{(uint64_t{e.addr_hi} << 32) | e.addr_lo, e.data, vector_masked_locked(vector),
                   true};
    RouteState& was = routes_[vector];
    bool report;
    if (now.masked)
        report = was.valid && !was.masked;  // addr/data of a masked vector do not matter
    else
        report = !was.valid || was.masked || was.addr != now.addr || was.data != now.data;
    was = now;
    if (report && msi_) msi_->set_msi_route(vector, now.addr, now.data, now.masked);
    if (!now.masked && msix_pending_[vector]) {
        msix_pending_[vector] = false;
        interrupts_.fetch_add(1, std::memory_order_relaxed);
        if (msi_) msi_->signal_msi(vector);
    }
}

void VirtioPciDevice::update_intx_locked() {
    const bool disabled = config_get(pci::kCommand, 2) & pci::kCommandIntxDisable;
    const bool level = !msix_enabled_ && isr_ != 0 && !disabled;
    const uint32_t st = config_get(pci::kStatus, 2);
    const bool pending = isr_ != 0 && !msix_enabled_;
    config_set(pci::kStatus, 2, pending ? st | pci::kStatusInterrupt : st & ~pci::kStatusInterrupt);
    if (intx_ && level != intx_level_) {
        intx_level_ = level;
        intx_->set_level(level);
    }
}

// ---- MSI-X table and PBA ---------------------------------------------------------

uint64_t VirtioPciDevice::msix_read(uint32_t off, unsigned len) {
    std::lock_guard lock(mu_);
    if (off >= kMsixPbaOffset) {
        uint64_t v = 0;
        const uint32_t o = off - kMsixPbaOffset;
        for (unsigned i = 0; i < len * 8; ++i) {
            const uint32_t vec = o * 8 + i;
            if (vec < nvectors_ && msix_pending_[vec]) v |= uint64_t{1} << i;
        }
        return v;
    }
    const uint32_t o = off - kMsixTableOffset;
    const uint32_t vec = o / PCI_MSIX_ENTRY_SIZE, field = o % PCI_MSIX_ENTRY_SIZE;
    if (vec >= nvectors_ || (len != 4 && len != 8) || field % len) return 0;
    const MsixEntry& e = msix_table_[vec];
    // The entry's dwords in table order (PCI_MSIX_ENTRY_LOWER_ADDR ...).
    const uint32_t dw[4] = {e.addr_lo, e.addr_hi, e.data, e.ctrl};
    static_assert(PCI_MSIX_ENTRY_VECTOR_CTRL == 3 * sizeof(uint32_t));
    uint64_t v = dw[field / 4];
    if (len == 8) v |= uint64_t{dw[field / 4 + 1]} << 32;
    return v;
}

void VirtioPciDevice::msix_write(uint32_t off, unsigned len, uint64_t v) {
    if (off >= kMsixPbaOffset) return;  // PBA is read-only
    std::lock_guard lock(mu_);
    const uint32_t o = off - kMsixTableOffset;
    const uint32_t vec = o / PCI_MSIX_ENTRY_SIZE, field = o % PCI_MSIX_ENTRY_SIZE;
    if (vec >= nvectors_ || (len != 4 && len != 8) || field % len) return;
    MsixEntry& e = msix_table_[vec];
    auto set = [&](uint32_t f, uint32_t val) {
        switch (f) {
            case PCI_MSIX_ENTRY_LOWER_ADDR:
                e.addr_lo = val;
                break;
            case PCI_MSIX_ENTRY_UPPER_ADDR:
                e.addr_hi = val;
                break;
            case PCI_MSIX_ENTRY_DATA:
                e.data = val;
                break;
            case PCI_MSIX_ENTRY_VECTOR_CTRL:
                e.ctrl = val & PCI_MSIX_ENTRY_CTRL_MASKBIT;
                break;  // only the mask bit is defined
        }
    };
    set(field, static_cast<uint32_t>(v));
    if (len == 8) set(field + 4, static_cast<uint32_t>(v >> 32));
    update_vector_locked(static_cast<uint16_t>(vec));
}

// ---- PCI configuration hooks ------------------------------------------------------

}  // namespace kvmsandbox
