// What the files of P9Server share among themselves and nobody else: the
// per-fid state, the xattr budget, qid making, the scatter/gather helpers and
// the request-decoding checks. Not a public header: include only from
// src/virtio/9p/server*.cpp.
//
// Lock order: P9Server::table_mu_ is never held while taking a Fid::mu (a
// request takes its FidPtr out of the table first, then locks the fid).
#pragma once

#include <sys/stat.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "shares/confined_root.h"
#include "virtio/9p/server.h"
#include "virtio/9p/wire.h"

namespace kvmsandbox::p9 {

using shares::SharedFd;

// Largest non-Twrite request we accept: Twalk with 16 maximal names, Tsymlink
// with a PATH_MAX target and Tattach with two long strings all fit.
inline constexpr size_t kMaxSmallRequest = 16384;
inline constexpr uint32_t kMinMsize = 4096;
inline constexpr size_t kMaxIov = 1024;  // IOV_MAX

enum class FidKind { kPath, kXattrRead, kXattrWrite };

// xattr values live in memory while their fid is open; a guest holding many
// such fids must not make us hold gigabytes, so they are charged against a
// server-wide budget and given back when the fid dies.
class XattrCharge {
  public:
    XattrCharge(std::shared_ptr<std::atomic<size_t>> pool, size_t n)
        : pool_(std::move(pool)), n_(n) {}
    ~XattrCharge() { pool_->fetch_sub(n_); }
    XattrCharge(const XattrCharge&) = delete;
    XattrCharge& operator=(const XattrCharge&) = delete;

    static std::unique_ptr<XattrCharge> take(const std::shared_ptr<std::atomic<size_t>>& pool,
                                             size_t n, size_t limit) {
        size_t cur = pool->load();
        do {
            if (cur > limit || n > limit - cur) return nullptr;
        } while (!pool->compare_exchange_weak(cur, cur + n));
        return std::make_unique<XattrCharge>(pool, n);
    }

  private:
    std::shared_ptr<std::atomic<size_t>> pool_;
    size_t n_;
};

// Per-fid state. `mu` guards every field; requests copy what they need (fds
// are shared_ptr, so a concurrent clunk cannot close them under an I/O).
struct Fid {
    std::mutex mu;
    FidKind kind = FidKind::kPath;
    SharedFd path;     // O_PATH|O_NOFOLLOW descriptor of the object
    SharedFd parent;   // O_PATH of the directory it was reached from; null at root or after ".."
    std::string name;  // its name in parent at walk/create time (for Trename/Tremove)
    SharedFd open;     // set once by lopen/lcreate
    int open_flags = 0;
    // xattr fids: value read by xattrwalk or being built by xattrcreate + write.
    std::vector<uint8_t> xattr;
    std::string xattr_name;
    uint32_t xattr_flags = 0;
    size_t xattr_written = 0;
    std::unique_ptr<XattrCharge> xattr_charge;
};

// A consistent copy of a fid's path fields, taken under its lock.
struct FidView {
    FidKind kind = FidKind::kPath;
    SharedFd path, parent, open;
    std::string name;
    int open_flags = 0;
};

inline FidView view(Fid& f) {
    std::lock_guard lk(f.mu);
    return {f.kind, f.path, f.parent, f.open, f.name, f.open_flags};
}

// EBADF unless the view is of a path fid.
inline ErrnoResult<void> check_path(const FidView& v) {
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    return {};
}

inline std::unexpected<int> errno_fail() {
    return std::unexpected(errno ? errno : EIO);
}

inline SharedFd share(UniqueFd fd) {
    return std::make_shared<const UniqueFd>(std::move(fd));
}

// Qid paths are the guest's inode numbers: Linux's v9fs client makes i_ino =
// qid.path + 2 (fs/9p v9fs_qid2ino / QID2INO on 64-bit guests; getdents'
// d_ino too), so we send the host inode minus that bias and `stat` in the
// guest shows the host's st_ino. Objects on another device than the share
// root (a mount inside the share) must not collide with the root device's:
// their inode is XORed with a 16-bit tag of the device, top bit set, in bits
// 48-63 (inode numbers of the file systems we know stay below 2^48). Within
// one device the map is one-to-one; two foreign devices collide only if their
// 15-bit tags do.
inline constexpr uint64_t kClientInoBias = 2;

inline uint64_t qid_path(uint64_t ino, uint64_t dev, uint64_t root_dev) {
    uint64_t v = ino;
    if (dev != root_dev) {
        const uint64_t tag = ((dev * 0x9E3779B97F4A7C15ull) >> 49) | 0x8000;
        v ^= tag << 48;
    }
    return v - kClientInoBias;
}

inline Qid make_qid(const struct stat& st, dev_t root_dev) {
    Qid q;
    if (S_ISDIR(st.st_mode))
        q.type = kQtDir;
    else if (S_ISLNK(st.st_mode))
        q.type = kQtSymlink;
    else
        q.type = kQtFile;
    // Version 0: the Linux client treats a changed version as a different
    // inode in some paths, and cache=none does not need it.
    q.version = 0;
    q.path = qid_path(st.st_ino, st.st_dev, root_dev);
    return q;
}

inline Qid P9Server::make_qid(const struct stat& st) const {
    return p9::make_qid(st, root_dev_);
}

// server_io.cpp: the guest's segments as one byte range.
size_t iov_total(const P9Server::IoVecs& v);
// Copies out.size() bytes starting at byte `off` of v (short if v ends).
size_t gather(const P9Server::IoVecs& v, size_t off, std::span<uint8_t> out);
size_t scatter(const P9Server::IoVecs& v, size_t off, std::span<const uint8_t> in);
// iovecs for [off, off+len) of v, at most kMaxIov of them (the I/O is then
// short, which 9P allows). Returns the byte length covered.
size_t build_iov(const P9Server::IoVecs& v, size_t off, size_t len, std::vector<iovec>& out);
size_t write_error(std::span<uint8_t> out, uint16_t tag, int err);

}  // namespace kvmsandbox::p9

// Handlers decode every field first and check the reader once: a truncated
// or over-long message is rejected before anything happens on the host.
#define P9_CHECK_READER(r)                                        \
    do {                                                          \
        if (!(r).ok()) return std::unexpected((r).error());       \
        if ((r).remaining() != 0) return std::unexpected(EPROTO); \
    } while (0)
