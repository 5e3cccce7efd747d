#include "kvm/kvm.h"

#include "kvm/ioctls.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cstdlib>

namespace kvmsandbox {

std::string kvm_device_path() {
    const char* p = std::getenv("KVMSANDBOX_KVM_DEVICE");
    return p && *p ? p : "/dev/kvm";
}

bool host_kvm_is_pvm() {
    struct stat st {};
    return ::stat("/sys/module/kvm_pvm", &st) == 0;
}

Result<Kvm> Kvm::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return failf(
                "{} does not exist: this host has no KVM (load kvm_intel or kvm_amd, "
                "or enable virtualization for this machine)",
                path);
        if (e == EACCES || e == EPERM)
            return failf("{}: permission denied (add yourself to the 'kvm' group)", path);
        return failf("cannot open {}: {}", path, std::strerror(e));
    }
    Kvm kvm{UniqueFd(fd)};
    int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        return failf("{} is not a usable KVM device (API version {}, need {})", path, version,
                     KVM_API_VERSION);
    struct Need {
        long cap;
        const char* name;
    };
    static constexpr Need needs[] = {
        {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
        {KVM_CAP_IRQCHIP, "IRQCHIP"},
        {KVM_CAP_PIT2, "PIT2"},
        {KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"},
        {KVM_CAP_EXT_CPUID, "EXT_CPUID"},
        {KVM_CAP_IRQFD, "IRQFD"},
        {KVM_CAP_IOEVENTFD, "IOEVENTFD"},
        {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
    };
    for (const auto& n : needs)
        if (kvm.check_extension(n.cap) <= 0)
            return failf("{} lacks the KVM capability {} that kvmsandbox needs", path, n.name);
    kvm.vcpu_mmap_size_ = ::ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (kvm.vcpu_mmap_size_ < static_cast<int>(sizeof(kvm_run)))
        return fail_errno("KVM_GET_VCPU_MMAP_SIZE");
    return kvm;
}

int Kvm::check_extension(long cap) const {
    return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
    // KVM refuses (EINVAL) more than its KVM_MAX_CPUID_ENTRIES (256) and says
    // E2BIG when fewer are offered than it has, so ask with exactly that many.
    constexpr uint32_t kMaxEntries = 256;
    kvm_ioctl::FlexArray<kvm_cpuid_entry2> arr(kMaxEntries, kMaxEntries);
    if (::ioctl(fd_.get(), kvm_ioctl::kGetSupportedCpuid, arr.data()) < 0)
        return fail_errno("KVM_GET_SUPPORTED_CPUID");
    std::vector<kvm_cpuid_entry2> out;
    for (uint32_t i = 0; i < arr.count() && i < kMaxEntries; ++i) out.push_back(arr.get(i));
    return out;
}

Result<UniqueFd> Kvm::create_vm() const {
    int vm = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
    if (vm < 0) return fail_errno("KVM_CREATE_VM");
    return UniqueFd(vm);
}

}  // namespace kvmsandbox
