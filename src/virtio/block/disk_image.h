// A raw disk image (a regular file or a block device) opened for a
// virtio-blk device: the open fd, its size in 512-byte sectors and a lock
// that keeps a second VM (or a second disk of the same VM) from writing the
// same image at the same time.
//
// The lock is an open-file-description lock (F_OFD_SETLK) on the whole file,
// exclusive for a writable image and shared for a read-only one: any number
// of read-only users, or one writer. It lives as long as the fd (it is tied
// to the open file description, not to the process), so two opens in one
// process conflict just like two processes do. On kernels without OFD locks
// it falls back to flock(), which has the same per-description semantics.
// Both are advisory: a tool that does not lock can still write the image.
//
// Size: an image whose size is not a multiple of 512 bytes is accepted; the
// partial last sector is not part of the disk (the guest never sees it, and
// writes never touch it). tail_bytes() says how many bytes that is, so the
// caller can warn. An image smaller than one sector is refused.
#pragma once

#include <linux/virtio_blk.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kvmsandbox {

class DiskImage {
  public:
    // virtio-blk's fixed 512-byte sector (virtio 1.x 5.2.6); the uapi
    // header has no constant for it.
    static constexpr uint64_t kSectorSize = 512;
    static constexpr uint32_t kSectorShift = 9;
    // GET_ID's serial is at most this long.
    static constexpr size_t kSerialLen = VIRTIO_BLK_ID_BYTES;

    // Opens `path` read-write (or read-only), with O_CLOEXEC, and locks it.
    // Errors are one line starting with "disk PATH: ".
    static Result<DiskImage> open(const std::string& path, bool read_only);

    DiskImage(DiskImage&&) noexcept = default;
    DiskImage& operator=(DiskImage&&) noexcept = default;

    int fd() const { return fd_.get(); }
    const std::string& path() const { return path_; }
    bool read_only() const { return read_only_; }
    bool is_block_device() const { return block_device_; }
    // Capacity in whole sectors (> 0), and in bytes.
    uint64_t sectors() const { return sectors_; }
    uint64_t size_bytes() const { return sectors_ << kSectorShift; }
    // Bytes past the last whole sector, ignored (0..511).
    uint64_t tail_bytes() const { return tail_bytes_; }
    // A stable identifier of the image (its device and inode numbers, in
    // hex), exactly kSerialLen characters: the default virtio-blk serial.
    std::string default_serial() const;

  private:
    DiskImage() = default;

    UniqueFd fd_;
    std::string path_;
    bool read_only_ = false;
    bool block_device_ = false;
    uint64_t sectors_ = 0;
    uint64_t tail_bytes_ = 0;
    uint64_t dev_ = 0;
    uint64_t ino_ = 0;
};

}  // namespace kvmsandbox
