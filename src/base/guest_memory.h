// Guest physical memory as the host sees it: a few regions, each a host
// mapping. Every access by a device or loader goes through here and is bounds
// checked, because addresses and lengths usually come from the guest.
// Unit tests build a GuestMemory over plain heap buffers (fake guest memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

namespace kvmsandbox {

struct MemoryRegion {
    uint64_t gpa = 0;         // guest physical start
    uint64_t size = 0;        // bytes
    uint8_t* host = nullptr;  // host address of gpa
};

class GuestMemory {
  public:
    GuestMemory() = default;
    explicit GuestMemory(std::vector<MemoryRegion> regions) : regions_(std::move(regions)) {}

    void add_region(MemoryRegion r) { regions_.push_back(r); }
    const std::vector<MemoryRegion>& regions() const { return regions_; }

    // Total RAM bytes over all regions.
    uint64_t total_size() const {
        uint64_t t = 0;
        for (const auto& r : regions_) t += r.size;
        return t;
    }

    // The host bytes for [gpa, gpa+len) if the whole range lies inside one
    // region; nullopt otherwise (including on address overflow). len 0 is valid
    // when gpa is inside or at the end of a region.
    std::optional<std::span<uint8_t>> span(uint64_t gpa, uint64_t len) const {
        for (const auto& r : regions_) {
            if (gpa < r.gpa) continue;
            uint64_t off = gpa - r.gpa;
            if (off > r.size) continue;
            if (len > r.size - off) continue;
            return std::span<uint8_t>(r.host + off, static_cast<size_t>(len));
        }
        return std::nullopt;
    }

    bool read(uint64_t gpa, void* dst, uint64_t len) const {
        auto s = span(gpa, len);
        if (!s) return false;
        if (len) std::memcpy(dst, s->data(), len);
        return true;
    }
    bool write(uint64_t gpa, const void* src, uint64_t len) const {
        auto s = span(gpa, len);
        if (!s) return false;
        if (len) std::memcpy(s->data(), src, len);
        return true;
    }

    template <typename T>
    std::optional<T> read_obj(uint64_t gpa) const {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        if (!read(gpa, &v, sizeof(T))) return std::nullopt;
        return v;
    }
    template <typename T>
    bool write_obj(uint64_t gpa, const T& v) const {
        static_assert(std::is_trivially_copyable_v<T>);
        return write(gpa, &v, sizeof(T));
    }

  private:
    std::vector<MemoryRegion> regions_;
};

}  // namespace kvmsandbox
