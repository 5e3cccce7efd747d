// Extended attributes (Txattrwalk, Txattrcreate and their commit at Tclunk)
// and POSIX locks (Tlock, Tgetlock). Only "user.*" xattrs are writable and
// "user.*" plus the POSIX ACLs readable; values are held in memory against a
// server-wide budget. Locks are OFD locks taken without blocking.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/9p/server.h"
#include "virtio/9p/server_internal.h"

namespace kvmsandbox::p9 {

namespace {

bool xattr_readable(std::string_view n) {
    return n.starts_with("user.") || n == "system.posix_acl_access" ||
           n == "system.posix_acl_default";
}

bool xattr_writable(std::string_view n) {
    return n.starts_with("user.") && n.size() > 5;
}

// The value Txattrwalk exposes: the readable names ("" asks for the list) or
// one attribute. Symlinks have none here.
ErrnoResult<std::vector<uint8_t>> xattr_value(int path_fd, bool is_link, const std::string& name) {
    const std::string p = shares::fd_path(path_fd);
    std::vector<uint8_t> value;
    if (name.empty()) {
        if (is_link) return value;
        std::vector<char> list(kMaxXattrSize);
        ssize_t n = listxattr(p.c_str(), list.data(), list.size());
        if (n < 0 && errno != ENOTSUP) return errno_fail();
        for (ssize_t pos = 0; n > 0 && pos < n;) {
            std::string_view item(list.data() + pos, strnlen(list.data() + pos, n - pos));
            pos += static_cast<ssize_t>(item.size()) + 1;
            if (!xattr_readable(item)) continue;
            value.insert(value.end(), item.begin(), item.end());
            value.push_back(0);
        }
        return value;
    }
    if (!xattr_readable(name)) return std::unexpected(EOPNOTSUPP);
    if (is_link) return std::unexpected(ENODATA);
    value.resize(kMaxXattrSize);
    ssize_t n = getxattr(p.c_str(), name.c_str(), value.data(), value.size());
    if (n < 0) return std::unexpected(errno == ERANGE ? E2BIG : errno);
    value.resize(static_cast<size_t>(n));
    return value;
}

ErrnoResult<short> lock_type(uint8_t t) {
    switch (t) {
        case kLockTypeRdlck:
            return F_RDLCK;
        case kLockTypeWrlck:
            return F_WRLCK;
        case kLockTypeUnlck:
            return F_UNLCK;
        default:
            return std::unexpected(EINVAL);
    }
}

// The byte range of a lock request, checked to fit off_t.
ErrnoResult<struct flock> lock_range(short type, uint64_t start, uint64_t length) {
    if (start > static_cast<uint64_t>(INT64_MAX) || length > static_cast<uint64_t>(INT64_MAX))
        return std::unexpected(EINVAL);
    struct flock fl {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(start);
    fl.l_len = static_cast<off_t>(length);
    return fl;
}

}  // namespace

ErrnoResult<void> P9Server::op_lock(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint8_t type = r.u8();
    r.u32();  // flags: we never block; BLOCKED tells a blocking client to retry
    uint64_t start = r.u64();
    uint64_t length = r.u64();
    r.u32();             // proc_id
    r.str(kMaxNameLen);  // client_id
    P9_CHECK_READER(r);
    KS_TRY_ASSIGN(const short lt, lock_type(type));
    KS_TRY_ASSIGN(struct flock fl, lock_range(lt, start, length));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    if (v.kind != FidKind::kPath || !v.open) return std::unexpected(EBADF);
    // OFD locks belong to the open file description of this fid, so two guest
    // opens conflict as they would locally, and the worker thread is irrelevant.
    uint8_t status = kLockSuccess;
    if (fcntl(v.open->get(), F_OFD_SETLK, &fl) < 0) {
        if (errno == EAGAIN || errno == EACCES)
            status = kLockBlocked;
        else
            return errno_fail();
    }
    w.u8(status);
    return {};
}

ErrnoResult<void> P9Server::op_getlock(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint8_t type = r.u8();
    uint64_t start = r.u64();
    uint64_t length = r.u64();
    uint32_t proc_id = r.u32();
    std::string client_id(r.str(kMaxNameLen));
    P9_CHECK_READER(r);
    KS_TRY_ASSIGN(const short lt, lock_type(type));
    KS_TRY_ASSIGN(struct flock fl, lock_range(lt, start, length));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    if (v.kind != FidKind::kPath || !v.open) return std::unexpected(EBADF);
    if (fcntl(v.open->get(), F_OFD_GETLK, &fl) < 0) return errno_fail();
    uint8_t out_type = fl.l_type == F_RDLCK   ? kLockTypeRdlck
                       : fl.l_type == F_WRLCK ? kLockTypeWrlck
                                              : kLockTypeUnlck;
    w.u8(out_type);
    if (out_type == kLockTypeUnlck) {
        w.u64(start);
        w.u64(length);
        w.u32(proc_id);
        w.str(client_id);
    } else {
        // The holder is another open file description; OFD locks have no pid.
        w.u64(static_cast<uint64_t>(fl.l_start));
        w.u64(static_cast<uint64_t>(fl.l_len));
        w.u32(fl.l_pid > 0 ? static_cast<uint32_t>(fl.l_pid) : 0);
        w.str("");
    }
    return {};
}

ErrnoResult<void> P9Server::op_xattrwalk(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint32_t newfid = r.u32();
    std::string name(r.str(kMaxXattrNameLen));
    P9_CHECK_READER(r);
    if (name.find('\0') != std::string::npos) return std::unexpected(EINVAL);
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    if (newfid != fid && get_fid(newfid)) return std::unexpected(EEXIST);
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(v.path->get()));
    KS_TRY_ASSIGN(std::vector<uint8_t> value,
                  xattr_value(v.path->get(), S_ISLNK(st.st_mode), name));
    auto nf = std::make_shared<Fid>();
    nf->kind = FidKind::kXattrRead;
    nf->path = v.path;
    nf->xattr_charge = XattrCharge::take(xattr_bytes_, value.size(), options_.max_xattr_bytes);
    if (!nf->xattr_charge) return std::unexpected(ENOMEM);
    nf->xattr = std::move(value);
    const uint64_t size = nf->xattr.size();
    KS_TRY(add_fid(newfid, std::move(nf), newfid == fid));
    w.u64(size);
    return {};
}

ErrnoResult<void> P9Server::op_xattrcreate(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    std::string name(r.str(kMaxXattrNameLen));
    uint64_t size = r.u64();
    uint32_t flags = r.u32();
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    if (name.find('\0') != std::string::npos) return std::unexpected(EINVAL);
    if (!xattr_writable(name)) return std::unexpected(EOPNOTSUPP);
    if (size > kMaxXattrSize) return std::unexpected(E2BIG);
    if (flags & ~static_cast<uint32_t>(XATTR_CREATE | XATTR_REPLACE))
        return std::unexpected(EINVAL);
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    std::lock_guard lk(f->mu);
    if (f->kind != FidKind::kPath || f->open) return std::unexpected(EBADF);
    auto charge = XattrCharge::take(xattr_bytes_, size, options_.max_xattr_bytes);
    if (!charge) return std::unexpected(ENOMEM);
    // The fid becomes the attribute: Twrite fills it, Tclunk sets it.
    f->kind = FidKind::kXattrWrite;
    f->xattr_charge = std::move(charge);
    f->xattr.assign(size, 0);
    f->xattr_name = name;
    f->xattr_flags = flags;
    f->xattr_written = 0;
    return {};
}

// Tclunk of an xattrcreate fid: the value must have been written in full.
ErrnoResult<void> P9Server::apply_xattr(Fid& f) {
    if (f.xattr_written != f.xattr.size()) return std::unexpected(EINVAL);
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(f.path->get()));
    if (S_ISLNK(st.st_mode)) return std::unexpected(EOPNOTSUPP);
    std::string p = shares::fd_path(f.path->get());
    int rc;
    if (f.xattr.empty())
        rc = removexattr(p.c_str(), f.xattr_name.c_str());
    else
        rc = setxattr(p.c_str(), f.xattr_name.c_str(), f.xattr.data(), f.xattr.size(),
                      static_cast<int>(f.xattr_flags));
    if (rc < 0) return errno_fail();
    return {};
}

}  // namespace kvmsandbox::p9
