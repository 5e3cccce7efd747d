#include "virtio/transport/virtio_pci.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <type_traits>

#include <fmt/core.h>

#include "base/log.h"

namespace kvmsandbox {

namespace {

// The layouts we build and parse, as Linux declares them.
static_assert(sizeof(virtio_pci_cap) == 16 && sizeof(virtio_pci_notify_cap) == 20 &&
              sizeof(virtio_pci_cfg_cap) == 20);
static_assert(offsetof(virtio_pci_cap, bar) == VIRTIO_PCI_CAP_BAR &&
              offsetof(virtio_pci_cap, offset) == VIRTIO_PCI_CAP_OFFSET &&
              offsetof(virtio_pci_cap, length) == VIRTIO_PCI_CAP_LENGTH &&
              offsetof(virtio_pci_notify_cap, notify_off_multiplier) == VIRTIO_PCI_NOTIFY_CAP_MULT);
static_assert(sizeof(virtio_pci_common_cfg) == VIRTIO_PCI_COMMON_Q_NDATA &&
              offsetof(virtio_pci_common_cfg, queue_used_hi) == VIRTIO_PCI_COMMON_Q_USEDHI);

void put_le(std::vector<uint8_t>& b, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A capability's bytes after the ID and next pointer, which add_capability()
// fills in itself (the host is little-endian, as PCI is).
template <typename Cap>
std::vector<uint8_t> cap_body(const Cap& c) {
    const auto* p = reinterpret_cast<const uint8_t*>(&c);
    return std::vector<uint8_t>(p + offsetof(virtio_pci_cap, cap_len), p + sizeof(Cap));
}

// A virtio_pci_cap of `type` in BAR0 for an outer structure of `Cap` bytes.
template <typename Cap = virtio_pci_cap>
Cap virtio_cap(uint8_t type, uint32_t offset, uint32_t length) {
    Cap c{};
    virtio_pci_cap& v = [&]() -> virtio_pci_cap& {
        if constexpr (std::is_same_v<Cap, virtio_pci_cap>)
            return c;
        else
            return c.cap;
    }();
    v.cap_vndr = PCI_CAP_ID_VNDR;
    v.cap_len = sizeof(Cap);
    v.cfg_type = type;
    v.bar = 0;
    v.offset = offset;
    v.length = length;
    return c;
}

bool overlaps(uint16_t off, unsigned len, uint16_t start, unsigned n) {
    return off < start + n && start < off + len;
}

}  // namespace

VirtioPciDevice::VirtioPciDevice(VirtioDevice& dev, const GuestMemory& mem, MsiRouter* msi,
                                 IoEventRegistrar* ioevents, IrqLine* intx, uint8_t intx_line)
    : PciDevice(PciIds{kVendor, static_cast<uint16_t>(kDeviceIdBase + dev.device_type()),
                       dev.pci_class(), 1, kVendor, 0x40}),
      dev_(dev),
      msi_(msi),
      ioevents_(ioevents),
      intx_(intx),
      offered_(dev.device_features() | virtio::bit(VIRTIO_F_VERSION_1) |
               virtio::bit(VIRTIO_RING_F_INDIRECT_DESC) | virtio::bit(VIRTIO_RING_F_EVENT_IDX)),
      nqueues_(std::min<uint16_t>(dev.num_queues(), kMaxQueues)),
      nvectors_(std::min<uint16_t>(static_cast<uint16_t>(nqueues_ + 1), kMaxVectors)),
      device_cfg_size_(std::min(dev.config_size(), kDeviceCfgMax)) {
    add_memory_bar(0, kBarSize, bar_);

    add_capability(PCI_CAP_ID_VNDR,
                   cap_body(virtio_cap(VIRTIO_PCI_CAP_COMMON_CFG, kCommonOffset, kCommonSize)));
    auto notify =
        virtio_cap<virtio_pci_notify_cap>(VIRTIO_PCI_CAP_NOTIFY_CFG, kNotifyOffset,
                                          std::max<uint32_t>(nqueues_, 1) * kNotifyMultiplier);
    notify.notify_off_multiplier = kNotifyMultiplier;
    add_capability(PCI_CAP_ID_VNDR, cap_body(notify));
    add_capability(PCI_CAP_ID_VNDR, cap_body(virtio_cap(VIRTIO_PCI_CAP_ISR_CFG, kIsrOffset, 1)));
    if (device_cfg_size_)
        add_capability(PCI_CAP_ID_VNDR, cap_body(virtio_cap(VIRTIO_PCI_CAP_DEVICE_CFG,
                                                            kDeviceCfgOffset, device_cfg_size_)));
    // VIRTIO_PCI_CAP_PCI_CFG: a config-space window into the BAR (the spec
    // requires it; few drivers use it). bar, offset, length, data writable.
    auto pcicfg = cap_body(virtio_cap<virtio_pci_cfg_cap>(VIRTIO_PCI_CAP_PCI_CFG, 0, 0));
    std::vector<uint8_t> pcicfg_mask(pcicfg.size(), 0);
    auto writable = [&](size_t off, size_t n) {
        const size_t body = off - offsetof(virtio_pci_cap, cap_len);
        std::fill_n(pcicfg_mask.begin() + static_cast<ptrdiff_t>(body), n, 0xff);
    };
    writable(offsetof(virtio_pci_cap, bar), sizeof(virtio_pci_cap::bar));
    writable(offsetof(virtio_pci_cap, offset), sizeof(virtio_pci_cap::offset));
    writable(offsetof(virtio_pci_cap, length), sizeof(virtio_pci_cap::length));
    writable(offsetof(virtio_pci_cfg_cap, pci_cfg_data), sizeof(virtio_pci_cfg_cap::pci_cfg_data));
    pci_cfg_cap_ = add_capability(PCI_CAP_ID_VNDR, pcicfg, pcicfg_mask);

    // MSI-X capability after ID and next: message control (table size - 1),
    // table and PBA offsets in BAR 0 (BIR 0).
    std::vector<uint8_t> msix;
    put_le(msix, nvectors_ - 1u, PCI_MSIX_TABLE - PCI_MSIX_FLAGS);
    put_le(msix, kMsixTableOffset | 0, PCI_MSIX_PBA - PCI_MSIX_TABLE);
    put_le(msix, kMsixPbaOffset | 0, PCI_CAP_MSIX_SIZEOF - PCI_MSIX_PBA);
    // The driver may only set enable and function mask.
    const std::vector<uint8_t> msix_mask = {0,
                                            (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8};
    msix_cap_ = add_capability(PCI_CAP_ID_MSIX, msix, msix_mask);

    if (intx_) set_interrupt_pin(1, intx_line);

    qregs_.resize(nqueues_);
    for (uint16_t q = 0; q < nqueues_; ++q) {
        uint16_t max = dev.queue_max_size(q);
        if (!std::has_single_bit(max) || max > virtq::kMaxQueueSize) max = 0;  // unusable
        queues_.push_back(std::make_unique<SplitQueue>(mem, max));
        queue_ptrs_.push_back(queues_.back().get());
        qregs_[q].size = max;
    }
    msix_table_.resize(nvectors_);
    msix_pending_.resize(nvectors_);
    routes_.resize(nvectors_);
    ioevent_gpas_.assign(nqueues_, 0);
}

VirtioPciDevice::~VirtioPciDevice() {
    // Take BAR0 off the bus (and the ioeventfds with it, via bar_moved)
    // while this object can still handle the hook.
    unmap_bars();
}

uint8_t VirtioPciDevice::status() const {
    std::lock_guard lock(mu_);
    return status_;
}

bool VirtioPciDevice::active() const {
    std::lock_guard lock(mu_);
    return active_;
}

uint64_t VirtioPciDevice::driver_features() const {
    std::lock_guard lock(mu_);
    return driver_features_;
}

std::optional<uint64_t> VirtioPciDevice::notify_address(uint16_t q) const {
    std::lock_guard lock(mu_);
    if (!bar_base_ || q >= nqueues_) return std::nullopt;
    return *bar_base_ + kNotifyOffset + uint64_t{kNotifyMultiplier} * q;
}

// ---- BAR0 -----------------------------------------------------------------

void VirtioPciDevice::bar_read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    const unsigned len = static_cast<unsigned>(data.size());
    if ((len != 1 && len != 2 && len != 4 && len != 8) || offset >= kBarSize ||
        len > kBarSize - offset)
        return;
    const uint32_t off = static_cast<uint32_t>(offset);
    uint64_t v = 0;
    if (off < kIsrOffset) {
        v = common_read(off - kCommonOffset, len);
    } else if (off < kDeviceCfgOffset) {
        if (off != kIsrOffset) return;
        // Reading the ISR acknowledges it (and drops the INTx line).
        std::lock_guard lock(mu_);
        v = isr_;
        isr_ = 0;
        update_intx_locked();
    } else if (off < kNotifyOffset) {
        const uint32_t o = off - kDeviceCfgOffset;
        if (o + len <= device_cfg_size_) dev_.read_config(o, data);
        return;
    } else if (off < kMsixTableOffset) {
        return;  // notify registers read as 0
    } else {
        v = msix_read(off, len);
    }
    for (unsigned i = 0; i < len; ++i) data[i] = static_cast<uint8_t>(v >> (8 * i));
}

void VirtioPciDevice::bar_write(uint64_t offset, std::span<const uint8_t> data) {
    const unsigned len = static_cast<unsigned>(data.size());
    if ((len != 1 && len != 2 && len != 4 && len != 8) || offset >= kBarSize ||
        len > kBarSize - offset)
        return;
    const uint32_t off = static_cast<uint32_t>(offset);
    uint64_t v = 0;
    for (unsigned i = 0; i < len; ++i) v |= uint64_t{data[i]} << (8 * i);
    if (off < kIsrOffset) {
        common_write(off - kCommonOffset, len, v);
    } else if (off < kDeviceCfgOffset) {
        // ISR is read-only.
    } else if (off < kNotifyOffset) {
        const uint32_t o = off - kDeviceCfgOffset;
        if (o + len <= device_cfg_size_) dev_.write_config(o, data);
    } else if (off < kMsixTableOffset) {
        // A notify write that was not caught by an ioeventfd. The queue is
        // the one whose register was written (the value is only a hint).
        const uint32_t o = off - kNotifyOffset;
        if (o % kNotifyMultiplier == 0 && o / kNotifyMultiplier < nqueues_)
            dev_.queue_notify(static_cast<uint16_t>(o / kNotifyMultiplier));
    } else {
        msix_write(off, len, v);
    }
}

// ---- common configuration -------------------------------------------------------

uint64_t VirtioPciDevice::common_read(uint32_t off, unsigned len) {
    std::lock_guard lock(mu_);
    const QueueRegs* q = queue_select_ < nqueues_ ? &qregs_[queue_select_] : nullptr;
    auto is = [&](uint32_t o, unsigned w) { return off == o && len == w; };
    // 64-bit fields may be read whole or as two 32-bit halves.
    auto half = [&](uint32_t o, uint64_t val) -> std::optional<uint64_t> {
        if (off == o && len == 8) return val;
        if (off == o && len == 4) return val & 0xffffffffu;
        if (off == o + 4 && len == 4) return val >> 32;
        return std::nullopt;
    };
    if (is(VIRTIO_PCI_COMMON_DFSELECT, 4)) return device_feature_select_;
    if (is(VIRTIO_PCI_COMMON_DF, 4))
        return device_feature_select_ == 0   ? offered_ & 0xffffffffu
               : device_feature_select_ == 1 ? offered_ >> 32
                                             : 0;
    if (is(VIRTIO_PCI_COMMON_GFSELECT, 4)) return driver_feature_select_;
    if (is(VIRTIO_PCI_COMMON_GF, 4))
        return driver_feature_select_ == 0   ? driver_features_ & 0xffffffffu
               : driver_feature_select_ == 1 ? driver_features_ >> 32
                                             : 0;
    if (is(VIRTIO_PCI_COMMON_MSIX, 2)) return msix_config_;
    if (is(VIRTIO_PCI_COMMON_NUMQ, 2)) return nqueues_;
    if (is(VIRTIO_PCI_COMMON_STATUS, 1)) return status_;
    if (is(VIRTIO_PCI_COMMON_CFGGENERATION, 1)) return config_generation_;
    if (is(VIRTIO_PCI_COMMON_Q_SELECT, 2)) return queue_select_;
    if (!q) return 0;  // no such queue: every queue register reads 0 (size 0 = absent)
    if (is(VIRTIO_PCI_COMMON_Q_SIZE, 2)) return q->size;
    if (is(VIRTIO_PCI_COMMON_Q_MSIX, 2)) return q->vector;
    if (is(VIRTIO_PCI_COMMON_Q_ENABLE, 2)) return q->enabled ? 1 : 0;
    if (is(VIRTIO_PCI_COMMON_Q_NOFF, 2)) return queue_select_;
    if (auto v = half(VIRTIO_PCI_COMMON_Q_DESCLO, q->desc)) return *v;
    if (auto v = half(VIRTIO_PCI_COMMON_Q_AVAILLO, q->driver)) return *v;
    if (auto v = half(VIRTIO_PCI_COMMON_Q_USEDLO, q->device)) return *v;
    return 0;
}

void VirtioPciDevice::common_write(uint32_t off, unsigned len, uint64_t v) {
    std::lock_guard status_lock(status_mu_);
    if (off == VIRTIO_PCI_COMMON_STATUS && len == 1) {
        write_status(static_cast<uint8_t>(v));
        return;
    }
    std::lock_guard lock(mu_);
    auto is = [&](uint32_t o, unsigned w) { return off == o && len == w; };
    auto set_half = [&](uint32_t o, uint64_t& field) {
        if (off == o && len == 8)
            field = v;
        else if (off == o && len == 4)
            field = (field & ~uint64_t{0xffffffffu}) | (v & 0xffffffffu);
        else if (off == o + 4 && len == 4)
            field = (field & 0xffffffffu) | (v << 32);
        else
            return false;
        return true;
    };
    if (is(VIRTIO_PCI_COMMON_DFSELECT, 4)) {
        device_feature_select_ = static_cast<uint32_t>(v);
    } else if (is(VIRTIO_PCI_COMMON_GFSELECT, 4)) {
        driver_feature_select_ = static_cast<uint32_t>(v);
    } else if (is(VIRTIO_PCI_COMMON_GF, 4)) {
        // Features are frozen once FEATURES_OK was accepted.
        if (status_ & VIRTIO_CONFIG_S_FEATURES_OK) return;
        if (driver_feature_select_ == 0)
            driver_features_ = (driver_features_ & ~uint64_t{0xffffffffu}) | v;
        else if (driver_feature_select_ == 1)
            driver_features_ = (driver_features_ & 0xffffffffu) | (v << 32);
    } else if (is(VIRTIO_PCI_COMMON_MSIX, 2)) {
        msix_config_ = check_vector_locked(static_cast<uint16_t>(v));
    } else if (is(VIRTIO_PCI_COMMON_Q_SELECT, 2)) {
        queue_select_ = static_cast<uint16_t>(v);  // out of range: queue registers go dead
    } else {
        if (queue_select_ >= nqueues_) return;
        QueueRegs& q = qregs_[queue_select_];
        // A live queue cannot be reconfigured (no VIRTIO_F_RING_RESET).
        if (q.enabled || (status_ & VIRTIO_CONFIG_S_DRIVER_OK)) return;
        uint64_t scratch = 0;
        if (is(VIRTIO_PCI_COMMON_Q_SIZE, 2)) {
            const auto n = static_cast<uint16_t>(v);
            if (n && std::has_single_bit(n) && n <= queues_[queue_select_]->max_size()) q.size = n;
        } else if (is(VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
            q.vector = check_vector_locked(static_cast<uint16_t>(v));
        } else if (is(VIRTIO_PCI_COMMON_Q_ENABLE, 2)) {
            if (v != 1) return;  // only enabling is defined; 0 is ignored
            auto r = queues_[queue_select_]->configure(
                q.size, q.desc, q.driver, q.device,
                driver_features_ & virtio::bit(VIRTIO_RING_F_EVENT_IDX));
            if (!r) {
                log::debug("virtio-pci: queue {}: {}", queue_select_, r.error().message);
                status_ |= VIRTIO_CONFIG_S_NEEDS_RESET;
                return;
            }
            q.enabled = true;
        } else if (set_half(VIRTIO_PCI_COMMON_Q_DESCLO, q.desc) ||
                   set_half(VIRTIO_PCI_COMMON_Q_AVAILLO, q.driver) ||
                   set_half(VIRTIO_PCI_COMMON_Q_USEDLO, q.device) ||
                   set_half(VIRTIO_PCI_COMMON_Q_NDATA, scratch)) {
            // stored (validated when the queue is enabled)
        }
    }
}

// Requires status_mu_ (not mu_): may call the device's activate()/reset().
void VirtioPciDevice::write_status(uint8_t v) {
    if (v == 0) {
        reset_device();
        return;
    }
    uint8_t old;
    uint64_t features;
    {
        std::lock_guard lock(mu_);
        old = status_;
        features = driver_features_;
    }
    constexpr uint8_t kDriverBits = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                                    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK |
                                    VIRTIO_CONFIG_S_FAILED;
    // A driver only adds bits; clearing one other than by reset is invalid.
    if (old & kDriverBits & ~v) return;
    uint8_t next = old | (v & kDriverBits);
    if ((next & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
        // Accept only what was offered, and only the modern interface.
        if (!(features & virtio::bit(VIRTIO_F_VERSION_1)) || (features & ~offered_))
            next &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    }
    bool activate = (next & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK);
    if (activate &&
        (!(next & VIRTIO_CONFIG_S_FEATURES_OK) || (old & VIRTIO_CONFIG_S_NEEDS_RESET))) {
        next &= ~VIRTIO_CONFIG_S_DRIVER_OK;
        activate = false;
    }
    {
        std::lock_guard lock(mu_);
        status_ = next;
    }
    if (!activate) return;
    auto r = dev_.activate(features, queue_ptrs_, irq_);
    if (!r) {
        log::debug("virtio-pci: activation of device type {} failed: {}", dev_.device_type(),
                   r.error().message);
        set_needs_reset();
        return;
    }
    std::lock_guard lock(mu_);
    active_ = true;
}

// Requires status_mu_.
void VirtioPciDevice::reset_device() {
    bool was_active;
    {
        std::lock_guard lock(mu_);
        was_active = active_;
        active_ = false;
    }
    // Without mu_: the device may wait for its threads, which may be inside
    // signal_queue() waiting for mu_.
    if (was_active) dev_.reset();
    for (auto& q : queues_) q->reset();
    std::lock_guard lock(mu_);
    reset_locked();
}

void VirtioPciDevice::reset_locked() {
    device_feature_select_ = 0;
    driver_feature_select_ = 0;
    driver_features_ = 0;
    msix_config_ = VIRTIO_MSI_NO_VECTOR;
    status_ = 0;
    queue_select_ = 0;
    for (uint16_t i = 0; i < nqueues_; ++i) {
        qregs_[i] = QueueRegs{};
        qregs_[i].size = queues_[i]->max_size();
    }
    isr_ = 0;
    update_intx_locked();
}

void VirtioPciDevice::config_written(uint16_t offset, unsigned len) {
    if (msix_cap_ && overlaps(offset, len, msix_cap_ + PCI_MSIX_FLAGS, 2)) {
        const uint32_t ctrl = config_get(msix_cap_ + PCI_MSIX_FLAGS, 2);
        std::lock_guard lock(mu_);
        msix_enabled_ = ctrl & PCI_MSIX_FLAGS_ENABLE;
        msix_function_masked_ = ctrl & PCI_MSIX_FLAGS_MASKALL;
        for (uint16_t v = 0; v < nvectors_; ++v) update_vector_locked(v);
        update_intx_locked();
    }
    if (overlaps(offset, len, pci::kCommand, 2)) {
        std::lock_guard lock(mu_);
        update_intx_locked();
    }
    if (pci_cfg_cap_ &&
        overlaps(offset, len, pci_cfg_cap_ + offsetof(virtio_pci_cfg_cap, pci_cfg_data), 4)) {
        const uint32_t bar = config_get(pci_cfg_cap_ + VIRTIO_PCI_CAP_BAR, 1);
        const uint32_t boff = config_get(pci_cfg_cap_ + VIRTIO_PCI_CAP_OFFSET, 4);
        const uint32_t blen = config_get(pci_cfg_cap_ + VIRTIO_PCI_CAP_LENGTH, 4);
        const uint32_t data =
            config_get(pci_cfg_cap_ + offsetof(virtio_pci_cfg_cap, pci_cfg_data), 4);
        if (bar != 0 || (blen != 1 && blen != 2 && blen != 4) || boff % blen) return;
        uint8_t bytes[4];
        for (unsigned i = 0; i < 4; ++i) bytes[i] = static_cast<uint8_t>(data >> (8 * i));
        bar_write(boff, std::span<const uint8_t>(bytes, blen));  // bar_write bounds-checks
    }
}

std::optional<uint32_t> VirtioPciDevice::config_read_override(uint16_t offset, unsigned len) {
    const uint16_t data_off = pci_cfg_cap_ + offsetof(virtio_pci_cfg_cap, pci_cfg_data);
    if (!pci_cfg_cap_ || offset < data_off || offset + len > data_off + 4u) return std::nullopt;
    const uint32_t bar = config_get(pci_cfg_cap_ + VIRTIO_PCI_CAP_BAR, 1);
    const uint32_t boff = config_get(pci_cfg_cap_ + VIRTIO_PCI_CAP_OFFSET, 4);
    const uint32_t blen = config_get(pci_cfg_cap_ + VIRTIO_PCI_CAP_LENGTH, 4);
    if (bar != 0 || (blen != 1 && blen != 2 && blen != 4) || boff % blen) return std::nullopt;
    uint8_t bytes[4] = {0, 0, 0, 0};
    bar_read(boff, std::span<uint8_t>(bytes, blen));
    uint32_t v = 0;
    for (unsigned i = 0; i < len; ++i) v |= uint32_t{bytes[offset - data_off + i]} << (8 * i);
    return v;
}

void VirtioPciDevice::bar_moved(unsigned bar, std::optional<uint64_t> base) {
    if (bar != 0) return;
    std::vector<uint64_t> old;
    {
        std::lock_guard lock(mu_);
        old = ioevent_gpas_;
        bar_base_ = base;
    }
    std::vector<uint64_t> now(nqueues_, 0);
    if (ioevents_) {
        for (uint16_t q = 0; q < nqueues_; ++q)
            if (old[q]) ioevents_->unregister_notify(old[q], q);
        for (uint16_t q = 0; base && q < nqueues_; ++q) {
            const uint64_t gpa = *base + kNotifyOffset + uint64_t{kNotifyMultiplier} * q;
            if (auto r = ioevents_->register_notify(gpa, q); r)
                now[q] = gpa;
            else  // still works, through MMIO exits
                log::debug("virtio-pci: no ioeventfd for queue {}: {}", q, r.error().message);
        }
    }
    std::lock_guard lock(mu_);
    ioevent_gpas_ = std::move(now);
}

}  // namespace kvmsandbox
