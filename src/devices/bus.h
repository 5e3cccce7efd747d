// Port I/O and MMIO dispatch: a guest access at an address is routed to the
// device whose range contains it, with the offset inside that range.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>

#include "base/result.h"

namespace kvmsandbox {

// A device on a bus. Called from vCPU threads concurrently: devices guard
// their own state. `offset` is relative to the range the device was added at.
class BusDevice {
  public:
    virtual ~BusDevice() = default;
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
  public:
    explicit Bus(std::string name) : name_(std::move(name)) {}

    // Fails if [base, base+len) is empty, wraps, or overlaps a range already added.
    Result<void> add(uint64_t base, uint64_t len, BusDevice* dev);
    void remove(uint64_t base);

    // Returns false when no device claims addr (the caller decides: reads of
    // unclaimed ports return all ones, writes are dropped).
    bool read(uint64_t addr, std::span<uint8_t> data);
    bool write(uint64_t addr, std::span<const uint8_t> data);

    uint64_t unclaimed_accesses() const { return unclaimed_.load(std::memory_order_relaxed); }

  private:
    struct Range {
        uint64_t len;
        BusDevice* dev;
    };
    // Finds the device for addr, with the offset of addr in its range.
    BusDevice* find(uint64_t addr, uint64_t& offset);

    std::string name_;
    mutable std::shared_mutex mu_;
    std::map<uint64_t, Range> ranges_;  // keyed by base
    std::atomic<uint64_t> unclaimed_{0};
};

}  // namespace kvmsandbox
