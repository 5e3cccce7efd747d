#include "arch/x86/cpuid.h"

#include <algorithm>

namespace kvmsandbox::x86 {

namespace {

constexpr uint32_t kLeaf1HypervisorBit = 1u << 31;  // ECX: running under a hypervisor
constexpr uint32_t kLeaf1HttBit = 1u << 28;         // EDX: more than one logical CPU per package
constexpr uint32_t kLeaf1TscDeadlineBit = 1u << 24;

CpuidEntry* find(std::vector<CpuidEntry>& v, uint32_t fn, uint32_t idx = 0) {
    for (auto& e : v)
        if (e.function == fn && (!(e.flags & kCpuidFlagSignificantIndex) || e.index == idx))
            return &e;
    return nullptr;
}

}  // namespace

std::vector<CpuidEntry> cpuid_for_vcpu(const std::vector<CpuidEntry>& supported, unsigned vcpu_id,
                                       unsigned num_cpus) {
    std::vector<CpuidEntry> out = supported;
    const uint32_t apic_id = vcpu_id;
    const uint32_t ncpu = std::max(1u, num_cpus);

    for (auto& e : out) {
        switch (e.function) {
            case 1:
                // APIC id and logical processor count live in EBX; the guest uses them
                // to build its topology and to address IPIs.
                e.ebx = (e.ebx & 0x0000ffffu) | (std::min(ncpu, 255u) << 16) | (apic_id << 24);
                e.ecx |= kLeaf1HypervisorBit;
                // KVM reports TSC-deadline support only if user space says the
                // in-kernel LAPIC emulates it, which it does.
                e.ecx |= kLeaf1TscDeadlineBit;
                if (ncpu > 1)
                    e.edx |= kLeaf1HttBit;
                else
                    e.edx &= ~kLeaf1HttBit;
                break;
            case 0xb:
            case 0x1f:
                // Extended topology: x2APIC id in EDX for every sub-leaf.
                e.edx = apic_id;
                break;
            case 4:
                // Intel cache topology: cores per package - 1 in EAX[31:26]. One
                // core per vCPU, all in one package.
                if ((e.eax & 0x1f) != 0)
                    e.eax = (e.eax & 0x03ffffffu) | ((std::min(ncpu, 64u) - 1) << 26);
                break;
            default:
                break;
        }
    }

    // KVM's supported list normally carries the KVM signature leaves; make sure
    // a guest always finds them, since kvmclock and PV features hang off them.
    if (!find(out, kHypervisorBase)) {
        CpuidEntry sig;
        sig.function = kHypervisorBase;
        sig.eax = kKvmFeatures;
        sig.ebx = 0x4b4d564b;  // "KVMK"
        sig.ecx = 0x564b4d56;  // "VMKV"
        sig.edx = 0x0000004d;  // "M\0\0\0"
        out.push_back(sig);
    }
    if (!find(out, kKvmFeatures)) {
        CpuidEntry feat;
        feat.function = kKvmFeatures;
        out.push_back(feat);
    }
    return out;
}

}  // namespace kvmsandbox::x86
