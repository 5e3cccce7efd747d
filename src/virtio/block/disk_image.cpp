#include "virtio/block/disk_image.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/core.h>

namespace kvmsandbox {

namespace {

std::unexpected<Error> disk_errno(const std::string& path, const char* what) {
    return fail_errno(fmt::format("disk {}: {}", path, what));
}

bool lock_conflict(int e) {
    return e == EAGAIN || e == EACCES || e == EWOULDBLOCK;
}

Result<void> lock_image(int fd, const std::string& path, bool read_only) {
    struct flock fl {};
    fl.l_type = read_only ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;  // the whole file, however large it grows
    int r;
    do {
        r = ::fcntl(fd, F_OFD_SETLK, &fl);
    } while (r != 0 && errno == EINTR);
    if (r == 0) return {};
    if (lock_conflict(errno)) return failf("disk {}: in use by another process", path);
    // EINVAL: a kernel older than 3.15 without OFD locks. flock() locks the
    // open file description too, so it gives the same guarantee.
    if (errno != EINVAL) return disk_errno(path, "cannot lock");
    do {
        r = ::flock(fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB);
    } while (r != 0 && errno == EINTR);
    if (r == 0) return {};
    if (lock_conflict(errno)) return failf("disk {}: in use by another process", path);
    return disk_errno(path, "cannot lock");
}

}  // namespace

Result<DiskImage> DiskImage::open(const std::string& path, bool read_only) {
    // O_NONBLOCK so that a FIFO given by mistake is refused below instead of
    // blocking the open until some writer shows up; cleared once we know the
    // file is a disk. O_NOCTTY for the same reason with terminals.
    const int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    int raw;
    do {
        raw = ::open(path.c_str(), flags);
    } while (raw < 0 && errno == EINTR);
    if (raw < 0) {
        // A directory opened for writing fails with EISDIR before we could
        // fstat it: say the same thing as for a read-only open.
        if (errno == EISDIR) return failf("disk {}: not a regular file or block device", path);
        return disk_errno(path, "cannot open");
    }
    DiskImage img;
    img.fd_ = UniqueFd(raw);
    img.path_ = path;
    img.read_only_ = read_only;

    struct stat st {};
    if (::fstat(raw, &st) != 0) return disk_errno(path, "cannot stat");
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return failf("disk {}: not a regular file or block device", path);
    img.block_device_ = S_ISBLK(st.st_mode);
    const int fl = ::fcntl(raw, F_GETFL);
    if (fl < 0 || ::fcntl(raw, F_SETFL, fl & ~O_NONBLOCK) != 0)
        return disk_errno(path, "cannot set flags");

    // Locked before sizing: the size another writer could still change
    // under us is not worth reading.
    KS_TRY(lock_image(raw, path, read_only));

    uint64_t bytes = 0;
    if (img.block_device_) {
        if (::ioctl(raw, BLKGETSIZE64, &bytes) != 0) return disk_errno(path, "cannot get size");
        // A block device's node says nothing about the disk; its device
        // number does.
        img.dev_ = st.st_rdev;
    } else {
        bytes = static_cast<uint64_t>(st.st_size);
        img.dev_ = st.st_dev;
    }
    img.ino_ = st.st_ino;
    if (bytes < kSectorSize)
        return failf("disk {}: {} bytes, smaller than one {}-byte sector", path, bytes,
                     kSectorSize);
    img.sectors_ = bytes >> kSectorShift;
    img.tail_bytes_ = bytes & (kSectorSize - 1);
    return img;
}

std::string DiskImage::default_serial() const {
    // 8 hex digits of the device number and 12 of the inode: unique per
    // host file system and stable across runs, which is what a guest's
    // /dev/disk/by-id wants.
    return fmt::format("{:08x}{:012x}", static_cast<uint32_t>(dev_), ino_ & 0xffffffffffffull);
}

}  // namespace kvmsandbox
