// The virtio 1.x "modern" PCI transport (no legacy interface): a PCI device
// with one 32-bit memory BAR holding, as announced by vendor capabilities,
// the common configuration, the ISR byte, the device configuration, the
// notification area and the MSI-X table and PBA.
//
// BAR0 layout (kBarSize bytes):
//   0x0000 common cfg   0x1000 ISR   0x2000 device cfg   0x3000 notify (4 bytes a queue)
//   0x3800 MSI-X table  0x3f00 MSI-X PBA
//
// All register values come from the guest: feature acks are checked against
// what was offered, queue registers against the device's limits, MSI-X
// vector numbers against the table; rings are validated by SplitQueue when a
// queue is enabled. A driver that breaks the rules gets DEVICE_NEEDS_RESET,
// never an effect outside its own device.
//
// Locking: `status_mu_` serializes common-config writes (and with them
// activate()/reset() of the device, which run without any other lock of
// ours); `mu_` guards registers and interrupt state and is the only lock the
// interrupt path (VirtioInterrupt, called from device threads) takes. Order:
// status_mu_ -> mu_ -> the PciDevice config lock. MsiRouter, IoEventRegistrar
// and IrqLine must not call back into this device.
#pragma once

#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "base/guest_memory.h"
#include "devices/irq_line.h"
#include "devices/pci.h"
#include "virtio/transport/virtio_device.h"
#include "virtio/transport/virtqueue.h"

namespace kvmsandbox {

// Programs MSI-X vectors into the interrupt controller (KVM GSI routes +
// irqfds in the VMM, a recorder in tests).
class MsiRouter {
  public:
    virtual ~MsiRouter() = default;
    // The effective state of `vector` changed. `masked` covers the entry's
    // mask bit, the function mask and MSI-X being disabled.
    virtual void set_msi_route(uint16_t vector, uint64_t addr, uint32_t data, bool masked) = 0;
    // Deliver `vector` (only called while it is unmasked).
    virtual void signal_msi(uint16_t vector) = 0;
};

// Wires queue notifications to ioeventfds. A queue without one still works:
// its notify writes reach the device through the MMIO BAR.
class IoEventRegistrar {
  public:
    virtual ~IoEventRegistrar() = default;
    // Arrange that a write to `gpa` (2 bytes, the queue index) calls
    // VirtioDevice::queue_notify(queue), without an MMIO exit.
    virtual Result<void> register_notify(uint64_t gpa, uint16_t queue) = 0;
    virtual void unregister_notify(uint64_t gpa, uint16_t queue) = 0;
};

class VirtioPciDevice : public PciDevice {
  public:
    // Register layouts and capability types are Linux's (<linux/virtio_pci.h>:
    // VIRTIO_PCI_COMMON_*, VIRTIO_PCI_CAP_*, struct virtio_pci_*; MSI-X from
    // <linux/pci_regs.h>). What follows has no uapi constant: the PCI IDs
    // (virtio 1.x 4.1.2; Linux keeps them in its in-kernel pci_ids.h) and
    // the BAR layout, which is ours to choose.
    static constexpr uint16_t kVendor = 0x1af4;        // Red Hat / Qumranet
    static constexpr uint16_t kDeviceIdBase = 0x1040;  // + virtio device type (modern IDs)
    static constexpr uint32_t kBarSize = 0x4000;
    static constexpr uint32_t kCommonOffset = 0x0000;
    // Through queue_reset: the 6.1 header's struct virtio_pci_common_cfg
    // stops before queue_notify_data, only the offsets go further.
    static constexpr uint32_t kCommonSize = VIRTIO_PCI_COMMON_Q_RESET + sizeof(__le16);
    static constexpr uint32_t kIsrOffset = 0x1000;
    static constexpr uint32_t kDeviceCfgOffset = 0x2000;
    static constexpr uint32_t kDeviceCfgMax = 0x1000;
    static constexpr uint32_t kNotifyOffset = 0x3000;
    static constexpr uint32_t kNotifyMultiplier = 4;
    static constexpr uint16_t kMaxQueues = 0x800 / kNotifyMultiplier;
    static constexpr uint32_t kMsixTableOffset = 0x3800;
    static constexpr uint32_t kMsixPbaOffset = 0x3f00;
    static constexpr uint16_t kMaxVectors =
        (kMsixPbaOffset - kMsixTableOffset) / PCI_MSIX_ENTRY_SIZE;

    // `dev`, `mem`, and the optional `msi`, `ioevents`, `intx` must outlive
    // this object. With `intx`, the device announces INTA and raises it
    // (reporting `intx_line` in config space) while MSI-X is disabled.
    VirtioPciDevice(VirtioDevice& dev, const GuestMemory& mem, MsiRouter* msi,
                    IoEventRegistrar* ioevents = nullptr, IrqLine* intx = nullptr,
                    uint8_t intx_line = 0);
    ~VirtioPciDevice() override;

    // The BAR0 region (also what the PciBarMapper registers on the MMIO bus).
    BusDevice& bar_region() { return bar_; }

    uint8_t status() const;
    bool active() const;
    uint64_t driver_features() const;
    uint16_t msix_vectors() const { return nvectors_; }
    // For `stat`: interrupts sent, and per queue the chains served and the
    // driver errors seen.
    VirtioDevice::Counters transport_counters() const;
    // Guest address of queue q's notify register, if BAR0 is mapped.
    std::optional<uint64_t> notify_address(uint16_t q) const;

  protected:
    void config_written(uint16_t offset, unsigned len) override;
    void bar_moved(unsigned bar, std::optional<uint64_t> base) override;
    std::optional<uint32_t> config_read_override(uint16_t offset, unsigned len) override;

  private:
    class Bar : public BusDevice {
      public:
        explicit Bar(VirtioPciDevice& d) : d_(d) {}
        void read(uint64_t offset, std::span<uint8_t> data) override { d_.bar_read(offset, data); }
        void write(uint64_t offset, std::span<const uint8_t> data) override {
            d_.bar_write(offset, data);
        }

      private:
        VirtioPciDevice& d_;
    };
    class Interrupt : public VirtioInterrupt {
      public:
        explicit Interrupt(VirtioPciDevice& d) : d_(d) {}
        void signal_queue(uint16_t q) override { d_.signal_queue(q); }
        void signal_config() override { d_.signal_config(); }
        void set_needs_reset() override { d_.set_needs_reset(); }

      private:
        VirtioPciDevice& d_;
    };
    struct QueueRegs {
        uint16_t size = 0;
        uint16_t vector = VIRTIO_MSI_NO_VECTOR;
        bool enabled = false;
        uint64_t desc = 0, driver = 0, device = 0;
    };
    struct MsixEntry {
        uint32_t addr_lo = 0, addr_hi = 0, data = 0;
        uint32_t ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;  // masked at reset
    };
    struct RouteState {
        uint64_t addr = 0;
        uint32_t data = 0;
        bool masked = true;
        bool valid = false;
    };

    void bar_read(uint64_t offset, std::span<uint8_t> data);
    void bar_write(uint64_t offset, std::span<const uint8_t> data);
    uint64_t common_read(uint32_t off, unsigned len);
    void common_write(uint32_t off, unsigned len, uint64_t v);
    void write_status(uint8_t v);
    void reset_device();
    uint64_t msix_read(uint32_t off, unsigned len);
    void msix_write(uint32_t off, unsigned len, uint64_t v);

    void signal_queue(uint16_t q);
    void signal_config();
    void set_needs_reset();

    // *_locked require mu_.
    void reset_locked();
    void deliver_locked(uint16_t vector);
    void update_vector_locked(uint16_t vector);
    void update_intx_locked();
    bool vector_masked_locked(uint16_t vector) const;
    uint16_t check_vector_locked(uint16_t vector) const;

    VirtioDevice& dev_;
    MsiRouter* msi_;
    IoEventRegistrar* ioevents_;
    IrqLine* intx_;
    const uint64_t offered_;
    const uint16_t nqueues_;
    const uint16_t nvectors_;
    const uint32_t device_cfg_size_;
    uint8_t msix_cap_ = 0;
    uint8_t pci_cfg_cap_ = 0;
    Bar bar_{*this};
    Interrupt irq_{*this};

    std::mutex status_mu_;
    mutable std::mutex mu_;
    // Registers (mu_).
    uint32_t device_feature_select_ = 0;
    uint32_t driver_feature_select_ = 0;
    uint64_t driver_features_ = 0;
    uint16_t msix_config_ = VIRTIO_MSI_NO_VECTOR;
    uint8_t status_ = 0;
    uint8_t config_generation_ = 0;
    uint16_t queue_select_ = 0;
    std::vector<QueueRegs> qregs_;
    uint8_t isr_ = 0;
    bool intx_level_ = false;
    bool msix_enabled_ = false;
    bool msix_function_masked_ = false;
    std::vector<MsixEntry> msix_table_;
    std::vector<bool> msix_pending_;
    std::vector<RouteState> routes_;
    bool active_ = false;
    std::optional<uint64_t> bar_base_;
    std::vector<uint64_t> ioevent_gpas_;  // registered notify addresses, by queue (0: none)

    // Queues handed to the device; touched by the transport only while the
    // device is inactive (under status_mu_).
    std::vector<std::unique_ptr<SplitQueue>> queues_;
    std::atomic<uint64_t> interrupts_{0};
    std::vector<SplitQueue*> queue_ptrs_;
};

}  // namespace kvmsandbox
