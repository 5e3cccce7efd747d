#include "vmm/virtio_slot.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"

namespace kvmsandbox {

Result<std::unique_ptr<VirtioSlot>> VirtioSlot::create(Vm& vm, GsiRoutes& routes,
                                                       const GuestMemory& mem, EventLoop& loop,
                                                       std::unique_ptr<VirtioDevice> device) {
    std::unique_ptr<VirtioSlot> slot(new VirtioSlot(vm, routes, loop, std::move(device)));
    const uint16_t nq = slot->device_->num_queues();
    for (uint16_t q = 0; q < nq; ++q) {
        UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!fd) return fail_errno("eventfd");
        const int raw = fd.get();
        VirtioDevice* dev = slot->device_.get();
        auto added = loop.add(raw, EPOLLIN, [raw, dev, q](uint32_t) {
            uint64_t n;
            if (::read(raw, &n, sizeof(n)) == sizeof(n)) dev->queue_notify(q);
        });
        if (!added) return std::unexpected(added.error());
        slot->notify_fds_.push_back(std::move(fd));
    }
    slot->pci_ = std::make_unique<VirtioPciDevice>(*slot->device_, mem, slot.get(), slot.get());
    return slot;
}

VirtioSlot::~VirtioSlot() {
    for (auto& fd : notify_fds_) loop_.remove(fd.get());
    std::lock_guard lock(mu_);
    for (auto& [vec, v] : vectors_) (void)vm_.remove_irqfd(v.fd.get(), v.gsi);
}

void VirtioSlot::set_msi_route(uint16_t vector, uint64_t addr, uint32_t data, bool masked) {
    std::lock_guard lock(mu_);
    auto it = vectors_.find(vector);
    if (it == vectors_.end()) {
        if (masked) return;  // nothing to route until the guest unmasks it
        auto gsi = routes_.allocate_msi();
        if (!gsi) {
            log::error("virtio: MSI-X vector {}: {}", vector, gsi.error().message);
            return;
        }
        Vector v;
        v.gsi = *gsi;
        v.fd = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!v.fd) {
            log::error("virtio: MSI-X vector {}: eventfd failed", vector);
            return;
        }
        if (auto r = routes_.set_msi(v.gsi, addr, data, false); !r) {
            log::error("virtio: MSI-X vector {}: {}", vector, r.error().message);
            return;
        }
        if (auto r = vm_.add_irqfd(v.fd.get(), v.gsi); !r) {
            log::error("virtio: MSI-X vector {}: {}", vector, r.error().message);
            return;
        }
        vectors_.emplace(vector, std::move(v));
        return;
    }
    if (auto r = routes_.set_msi(it->second.gsi, addr, data, masked); !r)
        log::error("virtio: MSI-X vector {}: {}", vector, r.error().message);
}

void VirtioSlot::signal_msi(uint16_t vector) {
    std::lock_guard lock(mu_);
    auto it = vectors_.find(vector);
    if (it == vectors_.end()) return;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(it->second.fd.get(), &one, sizeof(one));
}

Result<void> VirtioSlot::register_notify(uint64_t gpa, uint16_t queue) {
    if (queue >= notify_fds_.size()) return fail("virtio: notify for a queue that does not exist");
    // Linux writes the 16-bit queue index; other widths still reach the
    // device through an MMIO exit.
    return vm_.add_ioeventfd(notify_fds_[queue].get(), gpa, 2, false);
}

void VirtioSlot::unregister_notify(uint64_t gpa, uint16_t queue) {
    if (queue >= notify_fds_.size()) return;
    (void)vm_.remove_ioeventfd(notify_fds_[queue].get(), gpa, 2, false);
}

}  // namespace kvmsandbox
