// The VM's GSI routing table. KVM_SET_GSI_ROUTING replaces the whole table,
// so we keep it here: the legacy routes (PIC and IOAPIC pins, as KVM sets them
// up by default) plus one MSI route per allocated GSI, used by irqfds for
// MSI-X vectors of PCI devices.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "base/result.h"

namespace kvmsandbox {

class Vm;

class GsiRoutes {
  public:
    // GSIs below this are the IOAPIC's pins; MSI routes are allocated above.
    static constexpr uint32_t kFirstMsiGsi = 24;
    static constexpr uint32_t kMaxGsi = 1024;

    explicit GsiRoutes(Vm& vm) : vm_(vm) {}

    Result<uint32_t> allocate_msi();
    // Points `gsi` at an MSI message (the guest's MSI-X table entry) and
    // commits the table to KVM. A masked vector keeps its GSI but has its
    // route removed, so an irqfd signal is dropped rather than delivered.
    Result<void> set_msi(uint32_t gsi, uint64_t addr, uint32_t data, bool masked);

  private:
    struct Msi {
        uint32_t gsi;
        uint64_t addr;
        uint32_t data;
        bool masked;
    };
    Result<void> commit_locked();

    Vm& vm_;
    std::mutex mu_;
    std::vector<Msi> msis_;
    uint32_t next_gsi_ = kFirstMsiGsi;
};

}  // namespace kvmsandbox
