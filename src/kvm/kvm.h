// The KVM system device: API version and capability checks, and whether this
// host's KVM can run a stock kernel at all. Decided through the KVM API (and
// the loaded module), never from /proc/cpuinfo, which hides svm/vmx on some
// clouds even where KVM works.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kvmsandbox {

// Default device path, overridable with KVMSANDBOX_KVM_DEVICE (tests use it).
std::string kvm_device_path();

// PVM ("kvm_pvm" module) runs only specially built guest kernels; a stock
// kernel dies in its instruction emulator. True when that module is loaded.
bool host_kvm_is_pvm();

class Kvm {
  public:
    // Opens the device and checks the API version and every capability we rely on.
    static Result<Kvm> open(const std::string& path);

    int fd() const { return fd_.get(); }
    int vcpu_mmap_size() const { return vcpu_mmap_size_; }
    int check_extension(long cap) const;
    Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
    Result<UniqueFd> create_vm() const;

  private:
    explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
    int vcpu_mmap_size_ = 0;
};

}  // namespace kvmsandbox
