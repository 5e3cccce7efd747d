// A virtio device on the PCI bus, wired to KVM: its queue notifications are
// ioeventfds watched by the event loop (the vCPU does not exit to us), and
// its MSI-X vectors are irqfds on GSI routes (the device thread injects
// interrupts without a vCPU round trip).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/event_loop.h"
#include "base/unique_fd.h"
#include "kvm/gsi_routes.h"
#include "kvm/vm.h"
#include "virtio/transport/virtio_device.h"
#include "virtio/transport/virtio_pci.h"

namespace kvmsandbox {

class VirtioSlot : public MsiRouter, public IoEventRegistrar {
  public:
    // Creates the notify eventfds and registers them with `loop`; the loop
    // must outlive the slot.
    static Result<std::unique_ptr<VirtioSlot>> create(Vm& vm, GsiRoutes& routes,
                                                      const GuestMemory& mem, EventLoop& loop,
                                                      std::unique_ptr<VirtioDevice> device);
    ~VirtioSlot() override;

    VirtioPciDevice& pci() { return *pci_; }
    VirtioDevice& device() { return *device_; }

    void set_msi_route(uint16_t vector, uint64_t addr, uint32_t data, bool masked) override;
    void signal_msi(uint16_t vector) override;
    Result<void> register_notify(uint64_t gpa, uint16_t queue) override;
    void unregister_notify(uint64_t gpa, uint16_t queue) override;

  private:
    VirtioSlot(Vm& vm, GsiRoutes& routes, EventLoop& loop, std::unique_ptr<VirtioDevice> device)
        : vm_(vm), routes_(routes), loop_(loop), device_(std::move(device)) {}

    struct Vector {
        uint32_t gsi = 0;
        UniqueFd fd;
    };

    Vm& vm_;
    GsiRoutes& routes_;
    EventLoop& loop_;
    std::unique_ptr<VirtioDevice> device_;
    std::vector<UniqueFd> notify_fds_;  // one per queue
    std::mutex mu_;
    std::map<uint16_t, Vector> vectors_;
    // Last: destroyed first, while the fds it may unregister still exist.
    std::unique_ptr<VirtioPciDevice> pci_;
};

}  // namespace kvmsandbox
