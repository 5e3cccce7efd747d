#include "devices/pci.h"

#include <bit>

#include "base/log.h"

namespace kvmsandbox {

namespace {

bool valid_access(uint16_t offset, unsigned len) {
    return (len == 1 || len == 2 || len == 4) && offset < pci::kConfigSpaceSize &&
           len <= pci::kConfigSpaceSize - offset;
}

// The host bridge's own function at 00:00.0: IDs and class only, so the
// guest's type-1 sanity probe (it looks for a host bridge class) succeeds.
class HostBridgeFunction : public PciDevice {
  public:
    HostBridgeFunction()
        : PciDevice(PciIds{PciHostBridge::kVendor, PciHostBridge::kDevice, 0x060000, 0,
                           PciHostBridge::kVendor, PciHostBridge::kDevice}) {}
};

}  // namespace

// ---- BusBarMapper -------------------------------------------------------

Result<void> BusBarMapper::map_bar(PciDevice&, unsigned bar, uint64_t base, uint64_t size,
                                   BusDevice& region) {
    if (base < start_ || base > end_ || size > end_ - base)
        return failf("PCI BAR{} at {:#x}+{:#x} is outside the PCI window {:#x}..{:#x}", bar, base,
                     size, start_, end_);
    return bus_.add(base, size, &region);
}

void BusBarMapper::unmap_bar(PciDevice&, unsigned, uint64_t base) {
    bus_.remove(base);
}

// ---- PciDevice -----------------------------------------------------------

PciDevice::PciDevice(const PciIds& ids) {
    config_set(pci::kVendorId, 2, ids.vendor);
    config_set(pci::kDeviceId, 2, ids.device);
    config_set(pci::kRevisionId, 1, ids.revision);
    config_set(pci::kClassCode, 1, ids.class_code & 0xff);
    config_set(pci::kClassCode + 1, 2, (ids.class_code >> 8) & 0xffff);
    config_set(pci::kHeaderType, 1, 0);  // type 0, single function
    config_set(pci::kSubsystemVendorId, 2, ids.subsystem_vendor);
    config_set(pci::kSubsystemId, 2, ids.subsystem);
    // Command: memory space, bus master, parity response, SERR#, INTx
    // disable. No I/O BARs exist, so I/O space decoding stays off.
    wmask_[pci::kCommand] = 0x46;
    wmask_[pci::kCommand + 1] = 0x05;
    // Status: nothing writable (no error bits are ever set, so no RW1C bits).
    wmask_[pci::kCacheLineSize] = 0xff;  // Linux programs it; meaningless here
    wmask_[pci::kInterruptLine] = 0xff;  // scratch register for the OS
}

PciDevice::~PciDevice() {
    std::lock_guard map_lock(map_mu_);
    for (unsigned i = 0; i < pci::kNumBars; ++i)
        if (bars_[i].mapped && mapper_) mapper_->unmap_bar(*this, i, *bars_[i].mapped);
}

void PciDevice::unmap_bars() {
    std::lock_guard map_lock(map_mu_);
    for (unsigned i = 0; i < pci::kNumBars; ++i) {
        if (!bars_[i].mapped) continue;
        if (mapper_) mapper_->unmap_bar(*this, i, *bars_[i].mapped);
        bars_[i].mapped.reset();
        bar_moved(i, std::nullopt);
    }
}

uint32_t PciDevice::config_get(uint16_t offset, unsigned len) const {
    if (!valid_access(offset, len)) return 0xffffffffu;
    std::lock_guard lock(cfg_mu_);
    uint32_t v = 0;
    for (unsigned i = 0; i < len; ++i) v |= uint32_t{cfg_[offset + i]} << (8 * i);
    return v;
}

void PciDevice::config_set(uint16_t offset, unsigned len, uint32_t value) {
    if (!valid_access(offset, len)) return;
    std::lock_guard lock(cfg_mu_);
    for (unsigned i = 0; i < len; ++i) cfg_[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

uint32_t PciDevice::config_read(uint16_t offset, unsigned len) {
    if (!valid_access(offset, len)) return 0xffffffffu;
    if (auto v = config_read_override(offset, len)) return *v;
    return config_get(offset, len);
}

void PciDevice::config_write(uint16_t offset, unsigned len, uint32_t value) {
    if (!valid_access(offset, len)) return;
    std::lock_guard map_lock(map_mu_);
    {
        std::lock_guard lock(cfg_mu_);
        for (unsigned i = 0; i < len; ++i) {
            const uint8_t m = wmask_[offset + i];
            const uint8_t b = static_cast<uint8_t>(value >> (8 * i));
            cfg_[offset + i] = static_cast<uint8_t>((cfg_[offset + i] & ~m) | (b & m));
        }
    }
    update_mappings();
    config_written(offset, len);
}

std::optional<uint64_t> PciDevice::bar_address(unsigned bar) const {
    if (bar >= pci::kNumBars) return std::nullopt;
    std::lock_guard lock(map_mu_);
    return bars_[bar].mapped;
}

// Brings every BAR's mapping in line with the BAR registers and the memory
// decode bit. Requires map_mu_.
void PciDevice::update_mappings() {
    const bool decode = config_get(pci::kCommand, 2) & pci::kCommandMemory;
    for (unsigned i = 0; i < pci::kNumBars; ++i) {
        Bar& b = bars_[i];
        if (!b.size) continue;
        const uint32_t addr = config_get(pci::kBar0 + 4 * i, 4) & ~uint32_t{0xf};
        // Address 0 means "not assigned" to every OS; also covers BAR sizing
        // with decoding on (all-ones reads back as a high, unmappable address
        // which the mapper refuses as outside the window).
        std::optional<uint64_t> want;
        if (decode && addr != 0) want = addr;
        if (want == b.mapped) continue;
        if (b.mapped) {
            if (mapper_) mapper_->unmap_bar(*this, i, *b.mapped);
            b.mapped.reset();
            bar_moved(i, std::nullopt);
        }
        if (!want) continue;
        if (mapper_) {
            if (auto r = mapper_->map_bar(*this, i, *want, b.size, *b.region); !r) {
                // The guest put the BAR somewhere unusable: it stays unmapped
                // (accesses there hit nothing), as on hardware with a conflict.
                log::debug("PCI: BAR{} left unmapped: {}", i, r.error().message);
                continue;
            }
        }
        b.mapped = want;
        bar_moved(i, want);
    }
}

void PciDevice::add_memory_bar(unsigned bar, uint32_t size, BusDevice& region) {
    if (bar >= pci::kNumBars || size < 16 || !std::has_single_bit(size)) return;
    bars_[bar].size = size;
    bars_[bar].region = &region;
    const uint32_t mask = ~(size - 1) & ~uint32_t{0xf};  // type bits 0: 32-bit, non-prefetchable
    std::lock_guard lock(cfg_mu_);
    for (unsigned i = 0; i < 4; ++i)
        wmask_[pci::kBar0 + 4 * bar + i] = static_cast<uint8_t>(mask >> (8 * i));
}

uint8_t PciDevice::add_capability(uint8_t id, std::span<const uint8_t> body,
                                  std::span<const uint8_t> writable) {
    const uint16_t off = next_cap_;
    const size_t total = 2 + body.size();
    if (off + total > pci::kConfigSpaceSize) return 0;
    {
        std::lock_guard lock(cfg_mu_);
        cfg_[off] = id;
        cfg_[off + 1] = 0;
        for (size_t i = 0; i < body.size(); ++i) {
            cfg_[off + 2 + i] = body[i];
            wmask_[off + 2 + i] = i < writable.size() ? writable[i] : 0;
        }
        if (last_cap_)
            cfg_[last_cap_ + 1] = static_cast<uint8_t>(off);
        else
            cfg_[pci::kCapabilityPointer] = static_cast<uint8_t>(off);
        cfg_[pci::kStatus] |= pci::kStatusCapList;
    }
    last_cap_ = off;
    next_cap_ = static_cast<uint16_t>((off + total + 3) & ~3u);
    return static_cast<uint8_t>(off);
}

void PciDevice::set_interrupt_pin(uint8_t pin, uint8_t line) {
    config_set(pci::kInterruptPin, 1, pin);
    config_set(pci::kInterruptLine, 1, line);
}

// ---- PciHostBridge --------------------------------------------------------

PciHostBridge::PciHostBridge(PciBarMapper* mapper, uint64_t window_start, uint64_t window_end)
    : mapper_(mapper),
      window_end_(window_end),
      next_bar_(window_start),
      host_(std::make_unique<HostBridgeFunction>()) {
    slots_[0] = host_.get();
}

PciHostBridge::~PciHostBridge() = default;

Result<uint8_t> PciHostBridge::add_device(PciDevice& dev) {
    uint8_t slot = 0;
    {
        std::lock_guard lock(mu_);
        for (uint8_t s = 1; s < pci::kNumSlots; ++s)
            if (!slots_[s]) {
                slot = s;
                break;
            }
        if (!slot) return fail("PCI: bus 0 is full");
    }
    dev.set_bar_mapper(mapper_);
    // Assign BARs the way firmware would (naturally aligned, ascending), so
    // the guest finds them ready and keeps them.
    uint64_t next = next_bar_;
    for (unsigned i = 0; i < pci::kNumBars; ++i) {
        const uint64_t size = dev.bar_size(i);
        if (!size) continue;
        const uint64_t base = (next + size - 1) & ~(size - 1);
        if (base + size > window_end_ || base + size > (uint64_t{1} << 32))
            return failf("PCI: no room for BAR{} ({:#x} bytes) in the PCI window", i, size);
        dev.config_write(pci::kBar0 + 4 * i, 4, static_cast<uint32_t>(base));
        next = base + size;
    }
    dev.config_write(pci::kCommand, 2, dev.config_read(pci::kCommand, 2) | pci::kCommandMemory);
    for (unsigned i = 0; i < pci::kNumBars; ++i)
        if (dev.bar_size(i) && !dev.bar_address(i))
            return failf("PCI: BAR{} of the device in slot {} could not be mapped", i, slot);
    std::lock_guard lock(mu_);
    next_bar_ = next;
    slots_[slot] = &dev;
    return slot;
}

PciDevice* PciHostBridge::lookup(uint8_t bus, uint8_t slot, uint8_t fn) {
    if (bus != 0 || fn != 0 || slot >= pci::kNumSlots) return nullptr;
    std::lock_guard lock(mu_);
    return slots_[slot];
}

uint32_t PciHostBridge::config_read(uint8_t bus, uint8_t slot, uint8_t fn, uint16_t reg,
                                    unsigned len) {
    PciDevice* dev = lookup(bus, slot, fn);
    if (!dev) return len >= 4 ? 0xffffffffu : (1u << (8 * len)) - 1;
    return dev->config_read(reg, len);
}

void PciHostBridge::config_write(uint8_t bus, uint8_t slot, uint8_t fn, uint16_t reg, unsigned len,
                                 uint32_t value) {
    if (PciDevice* dev = lookup(bus, slot, fn)) dev->config_write(reg, len, value);
}

void PciHostBridge::read(uint64_t offset, std::span<uint8_t> data) {
    const size_t len = data.size();
    uint32_t v = 0xffffffffu;
    if (offset < 4) {
        // The address register answers dword reads only; narrower reads
        // would be other chipset registers (0xcf9 reset control) we lack.
        if (offset == 0 && len == 4) {
            std::lock_guard lock(mu_);
            v = address_;
        }
    } else if (offset < 8 && (len == 1 || len == 2 || len == 4) && (offset - 4) + len <= 4) {
        uint32_t addr;
        {
            std::lock_guard lock(mu_);
            addr = address_;
        }
        if (addr & 0x80000000u) {
            const uint16_t reg = static_cast<uint16_t>((addr & 0xfc) + (offset - 4));
            v = config_read((addr >> 16) & 0xff, (addr >> 11) & 0x1f, (addr >> 8) & 0x7, reg,
                            static_cast<unsigned>(len));
        }
    }
    for (size_t i = 0; i < len; ++i) data[i] = i < 4 ? static_cast<uint8_t>(v >> (8 * i)) : 0xff;
}

void PciHostBridge::write(uint64_t offset, std::span<const uint8_t> data) {
    const size_t len = data.size();
    if (len != 1 && len != 2 && len != 4) return;
    uint32_t v = 0;
    for (size_t i = 0; i < len; ++i) v |= uint32_t{data[i]} << (8 * i);
    if (offset < 4) {
        if (offset == 0 && len == 4) {
            std::lock_guard lock(mu_);
            // Bits 1:0 are reserved (read as 0); bits 30:24 are reserved on
            // mechanism #1 (AMD's extended register bits are not supported).
            address_ = v & 0x80fffffcu;
        }
        return;
    }
    if (offset >= 8 || (offset - 4) + len > 4) return;
    uint32_t addr;
    {
        std::lock_guard lock(mu_);
        addr = address_;
    }
    if (!(addr & 0x80000000u)) return;
    const uint16_t reg = static_cast<uint16_t>((addr & 0xfc) + (offset - 4));
    config_write((addr >> 16) & 0xff, (addr >> 11) & 0x1f, (addr >> 8) & 0x7, reg,
                 static_cast<unsigned>(len), v);
}

}  // namespace kvmsandbox
