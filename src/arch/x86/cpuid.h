// The CPUID a vCPU reports: what KVM supports, adjusted per vCPU (APIC ids,
// topology) and with the hypervisor leaves a paravirtual guest looks for.
// Kept free of linux/kvm.h so it is unit-tested on plain data.
#pragma once

#include <cstdint>
#include <vector>

namespace kvmsandbox::x86 {

struct CpuidEntry {
    uint32_t function = 0;
    uint32_t index = 0;
    uint32_t flags = 0;  // KVM_CPUID_FLAG_* as KVM gave them
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

inline constexpr uint32_t kCpuidFlagSignificantIndex = 1;  // KVM_CPUID_FLAG_SIGNIFCANT_INDEX
inline constexpr uint32_t kHypervisorBase = 0x40000000;
inline constexpr uint32_t kKvmFeatures = 0x40000001;

// Returns the entries vCPU `vcpu_id` of `num_cpus` should see.
std::vector<CpuidEntry> cpuid_for_vcpu(const std::vector<CpuidEntry>& supported, unsigned vcpu_id,
                                       unsigned num_cpus);

}  // namespace kvmsandbox::x86
