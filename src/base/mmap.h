// Owning memory mapping (guest RAM, vCPU run areas).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "base/result.h"

namespace kvmsandbox {

class Mmap {
  public:
    Mmap() = default;
    Mmap(const Mmap&) = delete;
    Mmap& operator=(const Mmap&) = delete;
    Mmap(Mmap&& o) noexcept
        : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Mmap& operator=(Mmap&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = std::exchange(o.addr_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~Mmap() { reset(); }

    static Result<Mmap> anonymous(size_t size, int extra_flags = MAP_NORESERVE) {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
        if (p == MAP_FAILED) return fail_errno("mmap anonymous memory");
        return Mmap(p, size);
    }
    static Result<Mmap> shared_fd(int fd, size_t size) {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) return fail_errno("mmap");
        return Mmap(p, size);
    }

    uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
    size_t size() const { return size_; }

  private:
    Mmap(void* a, size_t s) : addr_(a), size_(s) {}
    void reset() {
        if (addr_) ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }
    void* addr_ = nullptr;
    size_t size_ = 0;
};

}  // namespace kvmsandbox
