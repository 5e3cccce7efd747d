#include "devices/bus.h"

#include <algorithm>

namespace kvmsandbox {

Result<void> Bus::add(uint64_t base, uint64_t len, BusDevice* dev) {
    if (len == 0 || base + len < base)
        return failf("{} bus: invalid range {:#x}+{:#x}", name_, base, len);
    std::unique_lock lock(mu_);
    auto next = ranges_.lower_bound(base);
    if (next != ranges_.end() && next->first < base + len)
        return failf("{} bus: range {:#x}+{:#x} overlaps {:#x}+{:#x}", name_, base, len,
                     next->first, next->second.len);
    if (next != ranges_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second.len > base)
            return failf("{} bus: range {:#x}+{:#x} overlaps {:#x}+{:#x}", name_, base, len,
                         prev->first, prev->second.len);
    }
    ranges_.emplace(base, Range{len, dev});
    return {};
}

void Bus::remove(uint64_t base) {
    std::unique_lock lock(mu_);
    ranges_.erase(base);
}

BusDevice* Bus::find(uint64_t addr, uint64_t& offset) {
    auto it = ranges_.upper_bound(addr);
    if (it == ranges_.begin()) return nullptr;
    --it;
    if (addr - it->first >= it->second.len) return nullptr;
    offset = addr - it->first;
    return it->second.dev;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) {
    std::shared_lock lock(mu_);
    uint64_t off = 0;
    BusDevice* dev = find(addr, off);
    if (!dev) {
        unclaimed_.fetch_add(1, std::memory_order_relaxed);
        std::fill(data.begin(), data.end(), 0xff);
        return false;
    }
    dev->read(off, data);
    return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) {
    std::shared_lock lock(mu_);
    uint64_t off = 0;
    BusDevice* dev = find(addr, off);
    if (!dev) {
        unclaimed_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    dev->write(off, data);
    return true;
}

}  // namespace kvmsandbox
