#include "virtio/block/block.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace kvmsandbox {

namespace {

static_assert(VirtioBlock::kQueueSize <= IOV_MAX, "one request's buffers fit in one preadv");

template <typename T>
void put_le(uint8_t* p, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <typename T>
T get_le(const uint8_t* p) {
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
    return v;
}

// Copies `n` bytes starting `skip` bytes into `bufs`. The guest can rewrite
// its buffers at any time, so what we validate is this copy, read once.
// Returns false if the buffers hold fewer bytes.
bool gather(const std::vector<std::span<uint8_t>>& bufs, uint64_t skip, uint8_t* dst, size_t n) {
    for (const auto& b : bufs) {
        if (n == 0) break;
        if (skip >= b.size()) {
            skip -= b.size();
            continue;
        }
        const size_t k = std::min<uint64_t>(b.size() - skip, n);
        std::memcpy(dst, b.data() + skip, k);
        dst += k;
        n -= k;
        skip = 0;
    }
    return n == 0;
}

// The iovecs covering bytes [skip, skip + len) of `bufs` (which hold them).
std::vector<iovec> slice(const std::vector<std::span<uint8_t>>& bufs, uint64_t skip, uint64_t len) {
    std::vector<iovec> iov;
    iov.reserve(bufs.size());
    for (const auto& b : bufs) {
        if (len == 0) break;
        if (skip >= b.size()) {
            skip -= b.size();
            continue;
        }
        const uint64_t k = std::min<uint64_t>(b.size() - skip, len);
        iov.push_back(iovec{b.data() + skip, static_cast<size_t>(k)});
        len -= k;
        skip = 0;
    }
    return iov;
}

// Moves all of `iov` to or from the image at `offset`: short transfers are
// continued and EINTR retried. Reaching end of file (the image shrank under
// us) is a failure, as is any error.
bool transfer(int fd, std::vector<iovec> iov, uint64_t offset, bool write) {
    size_t i = 0;
    while (i < iov.size()) {
        const int cnt = static_cast<int>(std::min<size_t>(iov.size() - i, IOV_MAX));
        const ssize_t n = write ? ::pwritev(fd, &iov[i], cnt, static_cast<off_t>(offset))
                                : ::preadv(fd, &iov[i], cnt, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (n == 0) return false;
        offset += static_cast<uint64_t>(n);
        size_t left = static_cast<size_t>(n);
        while (left > 0) {
            if (left >= iov[i].iov_len) {
                left -= iov[i].iov_len;
                ++i;
            } else {
                iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + left;
                iov[i].iov_len -= left;
                left = 0;
            }
        }
    }
    return true;
}

// fallocate(2) retried on EINTR; returns 0 or the errno.
int falloc(int fd, int mode, uint64_t offset, uint64_t len) {
    for (;;) {
        if (::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(len)) == 0)
            return 0;
        if (errno != EINTR) return errno;
    }
}

bool unsupported(int e) {
    return e == EOPNOTSUPP || e == ENOSYS || e == ENOTTY;
}

// Writes zeros over [offset, offset + len) with plain writes: the last
// resort for file systems and devices without ZERO_RANGE or PUNCH_HOLE.
bool write_zeros(int fd, uint64_t offset, uint64_t len) {
    static const std::array<uint8_t, 64 * 1024> kZeros{};
    constexpr size_t kIovs = 16;  // 1 MiB per system call
    while (len > 0) {
        std::vector<iovec> iov;
        uint64_t chunk = 0;
        while (iov.size() < kIovs && chunk < len) {
            const uint64_t k = std::min<uint64_t>(kZeros.size(), len - chunk);
            iov.push_back(iovec{const_cast<uint8_t*>(kZeros.data()), static_cast<size_t>(k)});
            chunk += k;
        }
        if (!transfer(fd, std::move(iov), offset, true)) return false;
        offset += chunk;
        len -= chunk;
    }
    return true;
}

// Makes [offset, offset + len) read back as zeros. With `unmap` the space
// may be given back to the host (a hole); without it the blocks stay
// allocated, so that a later write there cannot fail for lack of space.
bool zero_range(int fd, uint64_t offset, uint64_t len, bool unmap) {
    if (unmap) {
        const int e = falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
        if (e == 0) return true;
        if (!unsupported(e)) return false;
    }
    int e = falloc(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, len);
    if (e == 0) return true;
    if (!unsupported(e)) return false;
    if (!unmap) {
        // tmpfs, for one, punches holes but has no ZERO_RANGE: punch, then
        // allocate the range again. If the allocation fails the range still
        // reads as zeros, which is what the request is about.
        e = falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
        if (e == 0) {
            falloc(fd, FALLOC_FL_KEEP_SIZE, offset, len);
            return true;
        }
        if (!unsupported(e)) return false;
    }
    return write_zeros(fd, offset, len);
}

// Whether `count` sectors from `sector` lie inside a disk of `capacity`
// sectors, without overflowing.
bool in_range(uint64_t sector, uint64_t count, uint64_t capacity) {
    return sector <= capacity && count <= capacity - sector;
}

}  // namespace

VirtioBlock::VirtioBlock(DiskImage image, std::string label, WorkerPool& pool, std::string serial)
    : image_(std::move(image)),
      label_(std::move(label)),
      serial_((serial.empty() ? image_.default_serial() : serial).substr(0, DiskImage::kSerialLen)),
      pool_(pool) {}

VirtioBlock::~VirtioBlock() {
    std::unique_lock lock(mu_);
    queue_ = nullptr;
    irq_ = nullptr;
    ++generation_;
    wait_idle(lock);
}

uint64_t VirtioBlock::device_features() const {
    uint64_t f = virtio::bit(VIRTIO_BLK_F_SEG_MAX) | virtio::bit(VIRTIO_BLK_F_BLK_SIZE) |
                 virtio::bit(VIRTIO_BLK_F_FLUSH);
    if (image_.read_only())
        f |= virtio::bit(VIRTIO_BLK_F_RO);
    else
        f |= virtio::bit(VIRTIO_BLK_F_DISCARD) | virtio::bit(VIRTIO_BLK_F_WRITE_ZEROES);
    return f;
}

void VirtioBlock::read_config(uint32_t offset, std::span<uint8_t> data) {
    // Built whole on every read: it is small, constant for the device's
    // life, and the driver reads it a few times at probe.
    uint8_t cfg[kConfigSize] = {};
    put_le<uint64_t>(cfg + offsetof(virtio_blk_config, capacity), image_.sectors());
    put_le<uint32_t>(cfg + offsetof(virtio_blk_config, seg_max), kSegMax);
    put_le<uint32_t>(cfg + offsetof(virtio_blk_config, blk_size), DiskImage::kSectorSize);
    // TOPOLOGY is not offered; the fields still hold the truth (one
    // logical block per physical block, no alignment offset).
    put_le<uint16_t>(cfg + offsetof(virtio_blk_config, min_io_size), 1);
    cfg[offsetof(virtio_blk_config, wce)] = 1;  // writeback: the driver must flush, and does
    put_le<uint16_t>(cfg + offsetof(virtio_blk_config, num_queues), 1);
    if (!image_.read_only()) {
        put_le<uint32_t>(cfg + offsetof(virtio_blk_config, max_discard_sectors),
                         kMaxDiscardSectors);
        put_le<uint32_t>(cfg + offsetof(virtio_blk_config, max_discard_seg), kMaxDiscardSeg);
        put_le<uint32_t>(cfg + offsetof(virtio_blk_config, discard_sector_alignment),
                         kDiscardSectorAlignment);
        put_le<uint32_t>(cfg + offsetof(virtio_blk_config, max_write_zeroes_sectors),
                         kMaxWriteZeroesSectors);
        put_le<uint32_t>(cfg + offsetof(virtio_blk_config, max_write_zeroes_seg),
                         kMaxWriteZeroesSeg);
        cfg[offsetof(virtio_blk_config, write_zeroes_may_unmap)] = 1;
    }
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i < kConfigSize ? cfg[offset + i] : 0;
}

Result<void> VirtioBlock::activate(uint64_t features, std::span<SplitQueue* const> queues,
                                   VirtioInterrupt& irq) {
    std::lock_guard lock(mu_);
    if (queues.size() != 1 || !queues[0]) return fail("virtio-blk: needs its request queue");
    queue_ = queues[0];
    irq_ = &irq;
    features_ = features;
    broken_ = false;
    return {};
}

void VirtioBlock::wait_idle(std::unique_lock<std::mutex>& lock) {
    idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
}

void VirtioBlock::reset() {
    std::unique_lock lock(mu_);
    queue_ = nullptr;
    irq_ = nullptr;
    features_ = 0;
    broken_ = false;
    ++generation_;
    // Requests already on a worker finish first (those not started yet are
    // skipped): after reset() returns nothing touches the guest's buffers.
    // Workers never wait for anything but the disk and this lock, so this
    // cannot deadlock.
    wait_idle(lock);
}

void VirtioBlock::queue_notify(uint16_t /*q*/) {
    std::lock_guard lock(mu_);
    if (!queue_ || broken_ || !queue_->ready() || queue_->broken()) return;
    for (;;) {
        auto chain = queue_->pop();
        if (!chain) {
            broken_ = true;
            if (irq_) irq_->set_needs_reset();
            return;
        }
        if (!*chain) return;
        if ((*chain)->writable_len == 0) {
            // No status byte: the request cannot even be failed.
            broken_ = true;
            errors_.fetch_add(1, std::memory_order_relaxed);
            if (irq_) irq_->set_needs_reset();
            return;
        }
        ++in_flight_;
        pool_.submit([this, c = std::move(**chain), gen = generation_, f = features_]() mutable {
            serve(std::move(c), gen, f);
        });
    }
}

void VirtioBlock::serve(VirtqChain chain, uint64_t generation, uint64_t features) {
    bool stale;
    {
        std::lock_guard lock(mu_);
        stale = generation != generation_;
    }
    if (!stale) {
        const Outcome out = handle(chain, features);
        // The status byte is the chain's last writable byte (queue_notify
        // checked there is one); the driver reads it after the used entry.
        chain.writable.back().back() = out.status;
        std::lock_guard lock(mu_);
        if (generation == generation_ && queue_) {
            if (!queue_->push_used(chain.head, out.written + 1)) {
                broken_ = true;
                if (irq_) irq_->set_needs_reset();
            } else if (irq_ && queue_->needs_interrupt()) {
                irq_->signal_queue(0);
            }
        }
    }
    std::lock_guard lock(mu_);
    if (--in_flight_ == 0) idle_cv_.notify_all();
}

VirtioBlock::Outcome VirtioBlock::ioerr() {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return {VIRTIO_BLK_S_IOERR, 0};
}

VirtioBlock::Outcome VirtioBlock::handle(const VirtqChain& chain, uint64_t features) {
    uint8_t hdr[kHeaderSize];
    if (!gather(chain.readable, 0, hdr, sizeof(hdr))) return ioerr();
    const uint32_t type = get_le<uint32_t>(hdr + offsetof(virtio_blk_outhdr, type));
    const uint64_t sector = get_le<uint64_t>(hdr + offsetof(virtio_blk_outhdr, sector));
    switch (type) {
        case VIRTIO_BLK_T_IN:
            return do_read(chain, sector);
        case VIRTIO_BLK_T_OUT:
            return do_write(chain, sector);
        case VIRTIO_BLK_T_FLUSH:
            return do_flush(chain);
        case VIRTIO_BLK_T_GET_ID:
            return do_get_id(chain);
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES: {
            const uint64_t feature = type == VIRTIO_BLK_T_DISCARD
                                         ? virtio::bit(VIRTIO_BLK_F_DISCARD)
                                         : virtio::bit(VIRTIO_BLK_F_WRITE_ZEROES);
            if (!(features & feature) || image_.read_only()) break;
            return do_ranges(chain, type == VIRTIO_BLK_T_DISCARD);
        }
        default:
            break;
    }
    unsupported_.fetch_add(1, std::memory_order_relaxed);
    return {VIRTIO_BLK_S_UNSUPP, 0};
}

VirtioBlock::Outcome VirtioBlock::do_read(const VirtqChain& chain, uint64_t sector) {
    const uint64_t len = chain.writable_len - 1;
    if (chain.readable_len != kHeaderSize || len % DiskImage::kSectorSize != 0 ||
        !in_range(sector, len >> DiskImage::kSectorShift, image_.sectors()))
        return ioerr();
    if (!transfer(image_.fd(), slice(chain.writable, 0, len), sector << DiskImage::kSectorShift,
                  false))
        return ioerr();
    reads_.fetch_add(1, std::memory_order_relaxed);
    read_bytes_.fetch_add(len, std::memory_order_relaxed);
    return {VIRTIO_BLK_S_OK, static_cast<uint32_t>(len)};
}

VirtioBlock::Outcome VirtioBlock::do_write(const VirtqChain& chain, uint64_t sector) {
    const uint64_t len = chain.readable_len - kHeaderSize;
    if (image_.read_only() || chain.writable_len != 1 || len % DiskImage::kSectorSize != 0 ||
        !in_range(sector, len >> DiskImage::kSectorShift, image_.sectors()))
        return ioerr();
    if (!transfer(image_.fd(), slice(chain.readable, kHeaderSize, len),
                  sector << DiskImage::kSectorShift, true))
        return ioerr();
    writes_.fetch_add(1, std::memory_order_relaxed);
    write_bytes_.fetch_add(len, std::memory_order_relaxed);
    return {VIRTIO_BLK_S_OK, 0};
}

VirtioBlock::Outcome VirtioBlock::do_flush(const VirtqChain& chain) {
    if (chain.readable_len != kHeaderSize || chain.writable_len != 1) return ioerr();
    // Nothing to flush on a read-only image, and fdatasync may fail there.
    if (!image_.read_only()) {
        int r;
        do {
            r = ::fdatasync(image_.fd());
        } while (r != 0 && errno == EINTR);
        if (r != 0) return ioerr();
    }
    flushes_.fetch_add(1, std::memory_order_relaxed);
    return {VIRTIO_BLK_S_OK, 0};
}

VirtioBlock::Outcome VirtioBlock::do_get_id(const VirtqChain& chain) {
    const uint64_t len = chain.writable_len - 1;
    if (chain.readable_len != kHeaderSize || len == 0) return ioerr();
    // NUL-padded to 20 bytes; a longer buffer gets only those 20.
    uint8_t id[DiskImage::kSerialLen] = {};
    std::memcpy(id, serial_.data(), serial_.size());
    const uint64_t n = std::min<uint64_t>(len, sizeof(id));
    size_t at = 0;
    for (const auto& v : slice(chain.writable, 0, n)) {
        std::memcpy(v.iov_base, id + at, v.iov_len);
        at += v.iov_len;
    }
    return {VIRTIO_BLK_S_OK, static_cast<uint32_t>(n)};
}

VirtioBlock::Outcome VirtioBlock::do_ranges(const VirtqChain& chain, bool discard) {
    const uint32_t max_seg = discard ? kMaxDiscardSeg : kMaxWriteZeroesSeg;
    const uint32_t max_sectors = discard ? kMaxDiscardSectors : kMaxWriteZeroesSectors;
    const uint64_t len = chain.readable_len - kHeaderSize;
    if (chain.writable_len != 1 || len == 0 || len % kRangeSize != 0 || len / kRangeSize > max_seg)
        return ioerr();
    const size_t count = len / kRangeSize;
    std::array<uint8_t, kRangeSize * std::max(kMaxDiscardSeg, kMaxWriteZeroesSeg)> raw;
    if (!gather(chain.readable, kHeaderSize, raw.data(), len)) return ioerr();

    struct Range {
        uint64_t sector;
        uint32_t sectors;
        bool unmap;
    };
    std::array<Range, std::max(kMaxDiscardSeg, kMaxWriteZeroesSeg)> ranges;
    // Every range is checked before any is applied, so a bad request
    // changes nothing.
    for (size_t i = 0; i < count; ++i) {
        const uint8_t* p = raw.data() + i * kRangeSize;
        const uint64_t sector =
            get_le<uint64_t>(p + offsetof(virtio_blk_discard_write_zeroes, sector));
        const uint32_t sectors =
            get_le<uint32_t>(p + offsetof(virtio_blk_discard_write_zeroes, num_sectors));
        const uint32_t flags =
            get_le<uint32_t>(p + offsetof(virtio_blk_discard_write_zeroes, flags));
        // Spec: unknown flags, and UNMAP on a discard, are UNSUPP.
        if ((flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0 || (discard && flags != 0)) {
            unsupported_.fetch_add(1, std::memory_order_relaxed);
            return {VIRTIO_BLK_S_UNSUPP, 0};
        }
        if (sectors > max_sectors || !in_range(sector, sectors, image_.sectors())) return ioerr();
        ranges[i] = {sector, sectors, (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0};
    }
    for (size_t i = 0; i < count; ++i) {
        const uint64_t off = ranges[i].sector << DiskImage::kSectorShift;
        const uint64_t n = uint64_t{ranges[i].sectors} << DiskImage::kSectorShift;
        if (n == 0) continue;
        if (discard) {
            // Discard is a hint: where holes cannot be punched the data
            // simply stays, which the spec allows.
            const int e = falloc(image_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n);
            if (e != 0 && !unsupported(e)) return ioerr();
        } else if (!zero_range(image_.fd(), off, n, ranges[i].unmap)) {
            return ioerr();
        }
    }
    (discard ? discards_ : write_zeroes_).fetch_add(1, std::memory_order_relaxed);
    return {VIRTIO_BLK_S_OK, 0};
}

VirtioDevice::Counters VirtioBlock::counters() const {
    auto v = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {{"reads", v(reads_)},
            {"writes", v(writes_)},
            {"read_bytes", v(read_bytes_)},
            {"write_bytes", v(write_bytes_)},
            {"flushes", v(flushes_)},
            {"discards", v(discards_)},
            {"write_zeroes", v(write_zeroes_)},
            {"errors", v(errors_)},
            {"unsupported", v(unsupported_)}};
}

}  // namespace kvmsandbox
