#include "kvm/vcpu.h"

#include "kvm/ioctls.h"

#include <sys/ioctl.h>

#include <cstring>

namespace kvmsandbox {

namespace {
constexpr uint32_t kApicLvtLint0 = 0x350;
constexpr uint32_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicModeExtInt = 0x7;
constexpr uint32_t kApicModeNmi = 0x4;

uint32_t lapic_reg(const kvm_lapic_state& s, uint32_t off) {
    uint32_t v;
    std::memcpy(&v, s.regs + off, sizeof(v));
    return v;
}
void set_lapic_reg(kvm_lapic_state& s, uint32_t off, uint32_t v) {
    std::memcpy(s.regs + off, &v, sizeof(v));
}
// Delivery mode lives in bits 8..10 of an LVT entry.
uint32_t with_delivery_mode(uint32_t lvt, uint32_t mode) {
    return (lvt & ~0x700u) | (mode << 8);
}
}  // namespace

Result<Vcpu> Vcpu::create(const Kvm& kvm, Vm& vm, unsigned id) {
    KS_TRY_ASSIGN(auto fd, vm.create_vcpu(id));
    KS_TRY_ASSIGN(auto run, Mmap::shared_fd(fd.get(), static_cast<size_t>(kvm.vcpu_mmap_size())));
    return Vcpu(id, std::move(fd), std::move(run));
}

Result<void> Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    const auto n = static_cast<uint32_t>(entries.size());
    kvm_ioctl::FlexArray<kvm_cpuid_entry2> arr(n, n);
    for (uint32_t i = 0; i < n; ++i) arr.set(i, entries[i]);
    if (::ioctl(fd_.get(), kvm_ioctl::kSetCpuid2, arr.data()) < 0)
        return fail_errno("KVM_SET_CPUID2");
    return {};
}

Result<void> Vcpu::set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
    const auto n = static_cast<uint32_t>(msrs.size());
    kvm_ioctl::FlexArray<kvm_msr_entry> arr(n, n);
    for (uint32_t i = 0; i < n; ++i) {
        kvm_msr_entry e{};
        e.index = msrs[i].first;
        e.data = msrs[i].second;
        arr.set(i, e);
    }
    int done = ::ioctl(fd_.get(), kvm_ioctl::kSetMsrs, arr.data());
    if (done < 0) return fail_errno("KVM_SET_MSRS");
    if (static_cast<uint32_t>(done) != n)
        return failf("KVM_SET_MSRS: MSR {:#x} was refused", msrs[static_cast<size_t>(done)].first);
    return {};
}

Result<void> Vcpu::set_fpu_defaults() {
    kvm_fpu fpu{};
    fpu.fcw = 0x37f;     // x87 default control word (all exceptions masked)
    fpu.mxcsr = 0x1f80;  // SSE default (all exceptions masked)
    if (::ioctl(fd_.get(), KVM_SET_FPU, &fpu) < 0) return fail_errno("KVM_SET_FPU");
    return {};
}

Result<void> Vcpu::set_lapic_lints() {
    kvm_lapic_state s{};
    if (::ioctl(fd_.get(), KVM_GET_LAPIC, &s) < 0) return fail_errno("KVM_GET_LAPIC");
    set_lapic_reg(s, kApicLvtLint0,
                  with_delivery_mode(lapic_reg(s, kApicLvtLint0), kApicModeExtInt));
    set_lapic_reg(s, kApicLvtLint1, with_delivery_mode(lapic_reg(s, kApicLvtLint1), kApicModeNmi));
    if (::ioctl(fd_.get(), KVM_SET_LAPIC, &s) < 0) return fail_errno("KVM_SET_LAPIC");
    return {};
}

Result<kvm_regs> Vcpu::get_regs() const {
    kvm_regs r{};
    if (::ioctl(fd_.get(), KVM_GET_REGS, &r) < 0) return fail_errno("KVM_GET_REGS");
    return r;
}

Result<void> Vcpu::set_regs(const kvm_regs& r) {
    if (::ioctl(fd_.get(), KVM_SET_REGS, &r) < 0) return fail_errno("KVM_SET_REGS");
    return {};
}

Result<kvm_sregs> Vcpu::get_sregs() const {
    kvm_sregs s{};
    if (::ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0) return fail_errno("KVM_GET_SREGS");
    return s;
}

Result<void> Vcpu::nmi() {
    if (::ioctl(fd_.get(), KVM_NMI) < 0) return fail_errno("KVM_NMI");
    return {};
}

Result<void> Vcpu::kvmclock_ctrl() {
    if (::ioctl(fd_.get(), KVM_KVMCLOCK_CTRL) < 0) return fail_errno("KVM_KVMCLOCK_CTRL");
    return {};
}

Result<void> Vcpu::set_sregs(const kvm_sregs& s) {
    if (::ioctl(fd_.get(), KVM_SET_SREGS, &s) < 0) return fail_errno("KVM_SET_SREGS");
    return {};
}

int Vcpu::run_once() const {
    return ::ioctl(fd_.get(), KVM_RUN, 0);
}

}  // namespace kvmsandbox
