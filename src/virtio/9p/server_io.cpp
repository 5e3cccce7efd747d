// Tread and Twrite without a bounce buffer: file data moves between the host
// file and the guest's scatter/gather segments with preadv/pwritev, and xattr
// fids read or fill their in-memory value. Offsets and counts come from the
// guest: counts are capped by msize and the frame, offsets by INT64_MAX.
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "virtio/9p/server.h"
#include "virtio/9p/server_internal.h"

namespace kvmsandbox::p9 {

size_t iov_total(const P9Server::IoVecs& v) {
    size_t t = 0;
    for (const auto& s : v) t += s.size();
    return t;
}

size_t gather(const P9Server::IoVecs& v, size_t off, std::span<uint8_t> out) {
    size_t done = 0;
    for (const auto& s : v) {
        if (done == out.size()) break;
        if (off >= s.size()) {
            off -= s.size();
            continue;
        }
        size_t n = std::min(s.size() - off, out.size() - done);
        std::memcpy(out.data() + done, s.data() + off, n);
        done += n;
        off = 0;
    }
    return done;
}

size_t scatter(const P9Server::IoVecs& v, size_t off, std::span<const uint8_t> in) {
    size_t done = 0;
    for (const auto& s : v) {
        if (done == in.size()) break;
        if (off >= s.size()) {
            off -= s.size();
            continue;
        }
        size_t n = std::min(s.size() - off, in.size() - done);
        std::memcpy(s.data() + off, in.data() + done, n);
        done += n;
        off = 0;
    }
    return done;
}

size_t build_iov(const P9Server::IoVecs& v, size_t off, size_t len, std::vector<iovec>& out) {
    size_t covered = 0;
    for (const auto& s : v) {
        if (covered == len || out.size() == kMaxIov) break;
        if (off >= s.size()) {
            off -= s.size();
            continue;
        }
        size_t n = std::min(s.size() - off, len - covered);
        out.push_back({s.data() + off, n});
        covered += n;
        off = 0;
    }
    return covered;
}

size_t write_error(std::span<uint8_t> out, uint16_t tag, int err) {
    Writer w(out);
    w.begin(kRlerror, tag);
    w.u32(static_cast<uint32_t>(err > 0 ? err : EIO));
    return w.finish();
}

namespace {

// preadv/pwritev of [off, off+len) of the guest's segments, restarted on EINTR.
ErrnoResult<size_t> file_io(bool write, int fd, const P9Server::IoVecs& v, size_t off, size_t len,
                            uint64_t offset) {
    std::vector<iovec> iov;
    if (build_iov(v, off, len, iov) == 0) return 0;
    ssize_t n;
    do {
        n = write
                ? pwritev(fd, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset))
                : preadv(fd, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return std::unexpected(errno);
    return static_cast<size_t>(n);
}

}  // namespace

size_t P9Server::do_read(const Header& h, std::span<const uint8_t> head, const IoVecs& response,
                         size_t cap) {
    Reader r(head.subspan(kHeaderSize));
    uint32_t fid = r.u32();
    uint64_t offset = r.u64();
    uint32_t count = r.u32();
    std::array<uint8_t, kReadHeaderSize> hdr{};
    auto error = [&](int e) {
        size_t n = write_error(hdr, h.tag, e);
        return scatter(response, 0, std::span(hdr).first(n));
    };
    if (!r.ok()) return error(r.error());
    if (h.size != kHeaderSize + 16) return error(EPROTO);
    if (offset > static_cast<uint64_t>(INT64_MAX)) return error(EINVAL);
    size_t want = std::min<size_t>(count, cap - kReadHeaderSize);

    auto f = get_fid(fid);
    if (!f) return error(f.error());
    size_t got = 0;
    {
        std::unique_lock lk((*f)->mu);
        Fid& fd = **f;
        if (fd.kind == FidKind::kXattrRead) {
            if (offset < fd.xattr.size()) {
                size_t n = std::min<size_t>(want, fd.xattr.size() - offset);
                got = scatter(response, kReadHeaderSize, std::span(fd.xattr).subspan(offset, n));
            }
        } else if (fd.kind == FidKind::kPath && fd.open) {
            SharedFd file = fd.open;
            lk.unlock();
            // Straight into the guest's buffers, no bounce copy.
            auto n = file_io(false, file->get(), response, kReadHeaderSize, want, offset);
            if (!n) return error(n.error());
            got = *n;
        } else {
            return error(EBADF);
        }
    }
    Writer w(hdr);
    w.begin(kRread, h.tag);
    w.u32(static_cast<uint32_t>(got));
    store_le32(hdr.data(), static_cast<uint32_t>(kReadHeaderSize + got));
    scatter(response, 0, hdr);
    return kReadHeaderSize + got;
}

size_t P9Server::do_write(const Header& h, std::span<const uint8_t> head, const IoVecs& request,
                          const IoVecs& response) {
    Reader r(head.subspan(kHeaderSize));
    uint32_t fid = r.u32();
    uint64_t offset = r.u64();
    uint32_t count = r.u32();
    std::array<uint8_t, kReadHeaderSize> out{};
    auto error = [&](int e) {
        size_t n = write_error(out, h.tag, e);
        return scatter(response, 0, std::span(out).first(n));
    };
    if (!r.ok()) return error(r.error());
    // The data must be exactly what the frame carries.
    if (static_cast<size_t>(count) != h.size - kWriteHeaderSize) return error(EPROTO);
    if (offset > static_cast<uint64_t>(INT64_MAX)) return error(EINVAL);

    auto f = get_fid(fid);
    if (!f) return error(f.error());
    size_t done = 0;
    {
        std::unique_lock lk((*f)->mu);
        Fid& fd = **f;
        if (fd.kind == FidKind::kXattrWrite) {
            if (offset > fd.xattr.size() || count > fd.xattr.size() - offset) return error(EINVAL);
            done = gather(request, kWriteHeaderSize, std::span(fd.xattr).subspan(offset, count));
            fd.xattr_written = std::max<size_t>(fd.xattr_written, offset + done);
        } else if (fd.kind == FidKind::kPath && fd.open) {
            if (auto ok = root_.check_writable(); !ok) return error(ok.error());
            SharedFd file = fd.open;
            lk.unlock();
            auto n = file_io(true, file->get(), request, kWriteHeaderSize, count, offset);
            if (!n) return error(n.error());
            done = *n;
        } else {
            return error(EBADF);
        }
    }
    Writer w(out);
    w.begin(kRwrite, h.tag);
    w.u32(static_cast<uint32_t>(done));
    size_t n = w.finish();
    return scatter(response, 0, std::span(out).first(n));
}

}  // namespace kvmsandbox::p9
