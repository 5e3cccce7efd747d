// Conventional PCI: a host bridge reached through configuration mechanism #1
// (address register at port 0xcf8, data window at 0xcfc..0xcff), one bus of
// 32 single-function slots, and the type-0 configuration space every device
// shares (IDs, command/status, 32-bit memory BARs, capability list).
//
// Configuration writes come from the guest and are hostile: every byte
// written is filtered through a per-byte writable mask, so read-only fields
// (IDs, class, header type, capability structure) can never change, and a
// BAR only ever holds an address aligned to its size. When a BAR's effective
// address changes (programming it, or toggling memory decoding in the
// command register) the device asks its PciBarMapper to move the MMIO
// registration; if that is refused (overlap with another device, outside the
// PCI window) the BAR is simply left unmapped.
//
// Locking: a device's configuration bytes are guarded by its own mutex;
// mapper calls and the derived-class hooks run without it, serialized by a
// second mutex, so that a mapper may take the MMIO bus lock while vCPUs
// accessing that bus can still reach the device.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "base/result.h"
#include "devices/bus.h"

namespace kvmsandbox {

namespace pci {
inline constexpr uint16_t kConfigAddressPort = 0xcf8;
inline constexpr uint16_t kConfigDataPort = 0xcfc;
inline constexpr uint32_t kConfigSpaceSize = 256;
inline constexpr unsigned kNumBars = 6;
inline constexpr unsigned kNumSlots = 32;

// Type-0 header offsets.
inline constexpr uint16_t kVendorId = 0x00;
inline constexpr uint16_t kDeviceId = 0x02;
inline constexpr uint16_t kCommand = 0x04;
inline constexpr uint16_t kStatus = 0x06;
inline constexpr uint16_t kRevisionId = 0x08;
inline constexpr uint16_t kClassCode = 0x09;  // 3 bytes: prog-if, subclass, class
inline constexpr uint16_t kCacheLineSize = 0x0c;
inline constexpr uint16_t kHeaderType = 0x0e;
inline constexpr uint16_t kBar0 = 0x10;
inline constexpr uint16_t kSubsystemVendorId = 0x2c;
inline constexpr uint16_t kSubsystemId = 0x2e;
inline constexpr uint16_t kCapabilityPointer = 0x34;
inline constexpr uint16_t kInterruptLine = 0x3c;
inline constexpr uint16_t kInterruptPin = 0x3d;
inline constexpr uint16_t kFirstCapability = 0x40;

inline constexpr uint16_t kCommandMemory = 1u << 1;
inline constexpr uint16_t kCommandBusMaster = 1u << 2;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;
inline constexpr uint16_t kStatusInterrupt = 1u << 3;
inline constexpr uint16_t kStatusCapList = 1u << 4;

inline constexpr uint8_t kCapIdVendor = 0x09;
inline constexpr uint8_t kCapIdMsix = 0x11;
}  // namespace pci

struct PciIds {
    uint16_t vendor = 0;
    uint16_t device = 0;
    uint32_t class_code = 0;  // class << 16 | subclass << 8 | prog-if
    uint8_t revision = 0;
    uint16_t subsystem_vendor = 0;
    uint16_t subsystem = 0;
};

class PciDevice;

// Places memory BARs in the guest physical address space.
class PciBarMapper {
  public:
    virtual ~PciBarMapper() = default;
    virtual Result<void> map_bar(PciDevice& dev, unsigned bar, uint64_t base, uint64_t size,
                                 BusDevice& region) = 0;
    virtual void unmap_bar(PciDevice& dev, unsigned bar, uint64_t base) = 0;
};

// The usual mapper: registers BAR regions on an MMIO Bus, only inside
// [window_start, window_end). The Bus refuses overlaps with other devices.
class BusBarMapper : public PciBarMapper {
  public:
    BusBarMapper(Bus& bus, uint64_t window_start, uint64_t window_end)
        : bus_(bus), start_(window_start), end_(window_end) {}
    Result<void> map_bar(PciDevice& dev, unsigned bar, uint64_t base, uint64_t size,
                         BusDevice& region) override;
    void unmap_bar(PciDevice& dev, unsigned bar, uint64_t base) override;

  private:
    Bus& bus_;
    uint64_t start_, end_;
};

class PciDevice {
  public:
    virtual ~PciDevice();
    PciDevice(const PciDevice&) = delete;
    PciDevice& operator=(const PciDevice&) = delete;

    // Guest configuration access. `len` is 1, 2 or 4 and [offset, offset+len)
    // must lie inside the 256-byte space: otherwise reads return all ones and
    // writes are dropped. Values are little-endian, as on the bus.
    uint32_t config_read(uint16_t offset, unsigned len);
    void config_write(uint16_t offset, unsigned len, uint32_t value);

    // Set before the guest runs (PciHostBridge::add_device does it).
    void set_bar_mapper(PciBarMapper* mapper) { mapper_ = mapper; }

    uint32_t bar_size(unsigned bar) const { return bar < pci::kNumBars ? bars_[bar].size : 0; }
    // Where the BAR is currently mapped (decoding on, address accepted by the mapper).
    std::optional<uint64_t> bar_address(unsigned bar) const;

  protected:
    explicit PciDevice(const PciIds& ids);

    // Declares `bar` as a 32-bit non-prefetchable memory BAR of `size` bytes
    // (a power of two >= 16) served by `region`, which must outlive the
    // device. Only during construction.
    void add_memory_bar(unsigned bar, uint32_t size, BusDevice& region);
    // Appends a capability (`body` is what follows the ID and next-pointer
    // bytes) and returns its offset. `writable` is a per-byte mask for body
    // (empty: read-only). Only during construction.
    uint8_t add_capability(uint8_t id, std::span<const uint8_t> body,
                           std::span<const uint8_t> writable = {});
    // Legacy INTx pin (1 = INTA) and the line number firmware would report.
    void set_interrupt_pin(uint8_t pin, uint8_t line);

    // Takes every BAR off the bus (calling bar_moved): derived destructors
    // call it so the hook still reaches them.
    void unmap_bars();

    // Unmasked access for the device model itself (e.g. read-only status bits).
    uint32_t config_get(uint16_t offset, unsigned len) const;
    void config_set(uint16_t offset, unsigned len, uint32_t value);

    // Hooks, run after a guest write has been applied, serialized with each
    // other and without the config lock held.
    virtual void config_written(uint16_t /*offset*/, unsigned /*len*/) {}
    // `base` is where `bar` is now mapped, nullopt when it no longer is.
    virtual void bar_moved(unsigned /*bar*/, std::optional<uint64_t> /*base*/) {}
    // Lets a device produce the value of a dynamic register; nullopt: use
    // the stored bytes. Runs without the config lock.
    virtual std::optional<uint32_t> config_read_override(uint16_t /*offset*/, unsigned /*len*/) {
        return std::nullopt;
    }

  private:
    struct Bar {
        uint32_t size = 0;
        BusDevice* region = nullptr;
        std::optional<uint64_t> mapped;
    };
    void update_mappings();

    mutable std::mutex cfg_mu_;
    std::array<uint8_t, pci::kConfigSpaceSize> cfg_{};
    std::array<uint8_t, pci::kConfigSpaceSize> wmask_{};
    uint16_t next_cap_ = pci::kFirstCapability;
    uint16_t last_cap_ = 0;  // offset of the last capability, 0: none

    mutable std::mutex map_mu_;  // serializes guest writes, mapper calls and hooks
    std::array<Bar, pci::kNumBars> bars_{};
    PciBarMapper* mapper_ = nullptr;
};

// Configuration mechanism #1 on bus 0. Register on the I/O bus at
// pci::kConfigAddressPort with length kPortCount: offsets 0..3 are the
// address register (dword access only), 4..7 the data window (byte, word or
// dword inside the selected dword). Slot 0 holds the host bridge itself.
class PciHostBridge : public BusDevice {
  public:
    static constexpr uint64_t kPortCount = 8;
    static constexpr uint16_t kVendor = 0x8086;
    static constexpr uint16_t kDevice = 0x0d57;  // the id Firecracker/Cloud Hypervisor use

    // `mapper` (may be null) receives every device's BARs; add_device assigns
    // BAR addresses from [window_start, window_end), as firmware would.
    PciHostBridge(PciBarMapper* mapper, uint64_t window_start, uint64_t window_end);
    ~PciHostBridge() override;

    // Puts `dev` (not owned; must outlive the bridge) in the first free slot,
    // assigns and maps its BARs and enables memory decoding. Returns the slot.
    // Call before the guest runs.
    Result<uint8_t> add_device(PciDevice& dev);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Access by bus/slot/function; absent functions read all ones.
    uint32_t config_read(uint8_t bus, uint8_t slot, uint8_t fn, uint16_t reg, unsigned len);
    void config_write(uint8_t bus, uint8_t slot, uint8_t fn, uint16_t reg, unsigned len,
                      uint32_t value);

  private:
    PciDevice* lookup(uint8_t bus, uint8_t slot, uint8_t fn);

    PciBarMapper* mapper_;
    uint64_t window_end_;
    uint64_t next_bar_;
    std::mutex mu_;  // address_ and slots_
    uint32_t address_ = 0;
    std::array<PciDevice*, pci::kNumSlots> slots_{};
    std::unique_ptr<PciDevice> host_;
};

}  // namespace kvmsandbox
