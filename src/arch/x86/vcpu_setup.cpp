#include "arch/x86/vcpu_setup.h"

#include "arch/x86/boot_regs.h"
#include "arch/x86/cpu_boot_state.h"
#include "arch/x86/cpuid.h"

namespace kvmsandbox::x86 {

namespace {

constexpr uint32_t kMsrIa32SysenterCs = 0x174, kMsrIa32SysenterEsp = 0x175,
                   kMsrIa32SysenterEip = 0x176, kMsrStar = 0xc0000081, kMsrLstar = 0xc0000082,
                   kMsrCstar = 0xc0000083, kMsrSyscallMask = 0xc0000084,
                   kMsrKernelGsBase = 0xc0000102, kMsrIa32MiscEnable = 0x1a0,
                   kMsrMtrrDefType = 0x2ff, kMsrIa32Tsc = 0x10;
constexpr uint64_t kMiscEnableFastString = 1;
// MTRRs enabled with write-back as the default type: without it the guest
// maps all RAM uncached and runs many times slower.
constexpr uint64_t kMtrrDefTypeEnabledWriteBack = (1ull << 11) | 6;

std::vector<kvm_cpuid_entry2> cpuid_entries(const std::vector<kvm_cpuid_entry2>& supported,
                                            unsigned id, unsigned cpus) {
    std::vector<CpuidEntry> base;
    base.reserve(supported.size());
    for (const auto& e : supported)
        base.push_back(CpuidEntry{e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
    std::vector<kvm_cpuid_entry2> entries;
    for (const auto& e : cpuid_for_vcpu(base, id, cpus)) {
        kvm_cpuid_entry2 k{};
        k.function = e.function;
        k.index = e.index;
        k.flags = e.flags;
        k.eax = e.eax;
        k.ebx = e.ebx;
        k.ecx = e.ecx;
        k.edx = e.edx;
        entries.push_back(k);
    }
    return entries;
}

}  // namespace

const std::vector<std::pair<uint32_t, uint64_t>>& initial_msrs() {
    static const std::vector<std::pair<uint32_t, uint64_t>> msrs = {
        {kMsrIa32SysenterCs, 0},
        {kMsrIa32SysenterEsp, 0},
        {kMsrIa32SysenterEip, 0},
        {kMsrStar, 0},
        {kMsrLstar, 0},
        {kMsrCstar, 0},
        {kMsrSyscallMask, 0},
        {kMsrKernelGsBase, 0},
        {kMsrIa32MiscEnable, kMiscEnableFastString},
        {kMsrMtrrDefType, kMtrrDefTypeEnabledWriteBack},
        // Writing 0 on every vCPU lets KVM treat them as one synchronized TSC.
        {kMsrIa32Tsc, 0},
    };
    return msrs;
}

Result<void> setup_vcpu(Vcpu& vcpu, const std::vector<kvm_cpuid_entry2>& supported, unsigned cpus) {
    KS_TRY(vcpu.set_cpuid(cpuid_entries(supported, vcpu.id(), cpus)));
    KS_TRY(vcpu.set_msrs(initial_msrs()));
    KS_TRY(vcpu.set_fpu_defaults());
    return vcpu.set_lapic_lints();
}

Result<void> setup_boot_registers(Vcpu& vcpu, const GuestMemory& mem, uint64_t entry,
                                  uint64_t boot_params) {
    KS_TRY_ASSIGN(auto st, setup_boot_cpu(mem, entry, boot_params));
    KS_TRY_ASSIGN(auto sregs, vcpu.get_sregs());
    kvm_regs regs{};
    apply_boot_state(st, sregs, regs);
    KS_TRY(vcpu.set_sregs(sregs));
    return vcpu.set_regs(regs);
}

}  // namespace kvmsandbox::x86
