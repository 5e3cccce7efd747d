// The x86 state every vCPU starts with, written through KVM: CPUID (what KVM
// supports, filtered per vCPU by cpuid.h), the MSRs firmware would leave, the
// FPU and LAPIC defaults, and for the boot CPU the registers that enter the
// kernel (cpu_boot_state.h). Called by vmm/ once per vCPU before it runs.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/guest_memory.h"
#include "base/result.h"
#include "kvm/vcpu.h"

namespace kvmsandbox::x86 {

// The MSRs set on every vCPU, as (index, value).
const std::vector<std::pair<uint32_t, uint64_t>>& initial_msrs();

// CPUID, MSRs, FPU and LAPIC of vCPU `id` of `cpus`, from KVM's supported
// CPUID.
Result<void> setup_vcpu(Vcpu& vcpu, const std::vector<kvm_cpuid_entry2>& supported, unsigned cpus);

// The boot CPU's registers: 64-bit mode at `entry` with boot_params at
// `boot_params` (page tables and GDT written into `mem`). The other vCPUs
// wait for INIT/SIPI from the guest, as on real hardware.
Result<void> setup_boot_registers(Vcpu& vcpu, const GuestMemory& mem, uint64_t entry,
                                  uint64_t boot_params);

}  // namespace kvmsandbox::x86
