// KVM structures that end in a flexible array, laid out as C lays them out.
//
// linux/kvm.h declares those arrays with __DECLARE_FLEX_ARRAY, which in C++
// puts an empty struct (one byte in g++) in front of the array: in C++ the
// entries of kvm_cpuid2 start at offset 12 instead of 8 and sizeof() differs,
// so both the ioctl numbers (which encode the size) and the data layout would
// be wrong. We build these buffers ourselves: an 8-byte header followed by the
// entry structs (which have no such arrays), and use ioctl numbers computed
// with the C sizes.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace kvmsandbox::kvm_ioctl {

inline constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8);
inline constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, 8);
inline constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, 8);
inline constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, 8);
inline constexpr unsigned long kSetGsiRouting = _IOC(_IOC_WRITE, KVMIO, 0x6a, 8);

// {u32 count; u32 pad/flags;} followed by `count` Entry structs.
template <typename Entry>
class FlexArray {
  public:
    explicit FlexArray(uint32_t capacity, uint32_t count = 0)
        : buf_(kHeader + sizeof(Entry) * capacity, 0) {
        set_count(count);
    }
    void* data() { return buf_.data(); }
    uint32_t count() const {
        uint32_t n;
        std::memcpy(&n, buf_.data(), sizeof(n));
        return n;
    }
    void set_count(uint32_t n) { std::memcpy(buf_.data(), &n, sizeof(n)); }
    void set_flags(uint32_t f) { std::memcpy(buf_.data() + 4, &f, sizeof(f)); }
    Entry get(size_t i) const {
        Entry e{};
        std::memcpy(&e, buf_.data() + kHeader + i * sizeof(Entry), sizeof(Entry));
        return e;
    }
    void set(size_t i, const Entry& e) {
        std::memcpy(buf_.data() + kHeader + i * sizeof(Entry), &e, sizeof(Entry));
    }

  private:
    static constexpr size_t kHeader = 8;
    std::vector<uint8_t> buf_;
};

}  // namespace kvmsandbox::kvm_ioctl
