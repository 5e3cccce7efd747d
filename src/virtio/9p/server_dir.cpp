// Directory requests: Treaddir (hidden entries, and on system shares those an
// unprivileged host user could not read, left out) and the requests
// that make, link, rename or remove entries. Every name is checked and every
// mutation is done by the share core (single components, no symlink
// resolution, modes sanitized, EROFS on a read-only share); the checks run
// here first as well so that errors keep their protocol order.
#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/9p/server.h"
#include "virtio/9p/server_internal.h"

namespace kvmsandbox::p9 {

namespace {

struct Dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    uint16_t d_reclen;
    uint8_t d_type;
    char d_name[];
};

// Appends the getdents64 records in buf[0, n) to w as Rreaddir entries while
// they fit in `limit` bytes; `used` counts the bytes written. Returns false
// once an entry did not fit.
bool encode_entries(const shares::ConfinedRoot& root, int dfd, const struct stat& dst,
                    dev_t root_dev, std::span<uint8_t> buf, long n, size_t limit, size_t& used,
                    Writer& w) {
    const dev_t dev = dst.st_dev;
    for (long pos = 0; pos < n;) {
        auto* d = reinterpret_cast<Dirent64*>(buf.data() + pos);
        if (d->d_reclen == 0) break;
        pos += d->d_reclen;
        size_t nlen = strnlen(d->d_name, kMaxNameLen + 1);
        if (!root.listed(dfd, dst, d->d_name, d->d_type, static_cast<ino_t>(d->d_ino))) continue;
        size_t entry = kQidSize + 8 + 1 + 2 + nlen;
        if (used + entry > limit) return false;
        Qid q;
        q.type = d->d_type == DT_DIR ? kQtDir : d->d_type == DT_LNK ? kQtSymlink : kQtFile;
        q.path = qid_path(d->d_ino, dev, root_dev);
        w.qid(q);
        w.u64(static_cast<uint64_t>(d->d_off));
        w.u8(d->d_type);
        w.str(std::string_view(d->d_name, nlen));
        used += entry;
    }
    return true;
}

}  // namespace

ErrnoResult<void> P9Server::op_readdir(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint64_t offset = r.u64();
    uint32_t count = r.u32();
    P9_CHECK_READER(r);
    if (offset > static_cast<uint64_t>(INT64_MAX)) return std::unexpected(EINVAL);
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    // Holding the fid lock: the directory position is shared state.
    std::lock_guard lk(f->mu);
    if (f->kind != FidKind::kPath || !f->open) return std::unexpected(EBADF);
    const int dfd = f->open->get();
    KS_TRY_ASSIGN(const struct stat dst, shares::stat_fd(dfd));
    if (!S_ISDIR(dst.st_mode)) return std::unexpected(ENOTDIR);

    size_t limit = std::min<size_t>(count, w.remaining() > 4 ? w.remaining() - 4 : 0);
    std::span<uint8_t> count_field = w.reserve(4);
    if (count_field.empty()) return std::unexpected(EMSGSIZE);

    // Offsets are the filesystem's own d_off cookies, opaque to the guest.
    if (lseek(dfd, static_cast<off_t>(offset), SEEK_SET) < 0) return errno_fail();
    std::vector<uint8_t> buf(std::clamp<size_t>(limit, 1024, 65536));
    size_t used = 0;
    bool full = false;
    while (!full) {
        long n = syscall(SYS_getdents64, dfd, buf.data(), buf.size());
        if (n < 0) {
            if (used == 0) return errno_fail();
            break;
        }
        if (n == 0) break;
        full = !encode_entries(root_, dfd, dst, root_dev_, buf, n, limit, used, w);
    }
    // Not even one entry fits: answering an empty list would mean "end".
    if (used == 0 && full) return std::unexpected(EINVAL);
    store_le32(count_field.data(), static_cast<uint32_t>(used));
    return {};
}

ErrnoResult<void> P9Server::op_mkdir(Reader& r, Writer& w) {
    uint32_t dfid = r.u32();
    std::string name(r.str(kMaxNameLen));
    uint32_t mode = r.u32();
    r.u32();  // gid
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(name));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(dfid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    KS_TRY_ASSIGN(const struct stat st, root_.make_dir(v.path->get(), name, mode));
    w.qid(make_qid(st));
    return {};
}

ErrnoResult<void> P9Server::op_symlink(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    std::string name(r.str(kMaxNameLen));
    std::string target(r.str(kMaxPathLen));
    r.u32();  // gid
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(name));
    KS_TRY(shares::check_symlink_target(target));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    KS_TRY_ASSIGN(const struct stat st, root_.make_symlink(v.path->get(), name, target));
    w.qid(make_qid(st));
    return {};
}

ErrnoResult<void> P9Server::op_mknod(Reader& r, Writer& w) {
    uint32_t dfid = r.u32();
    std::string name(r.str(kMaxNameLen));
    uint32_t mode = r.u32();
    r.u32();  // major
    r.u32();  // minor
    r.u32();  // gid
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(name));
    KS_TRY(shares::node_type(mode));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(dfid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    KS_TRY_ASSIGN(const struct stat st, root_.make_node(v.path->get(), name, mode));
    w.qid(make_qid(st));
    return {};
}

ErrnoResult<void> P9Server::op_link(Reader& r, Writer&) {
    uint32_t dfid = r.u32();
    uint32_t fid = r.u32();
    std::string name(r.str(kMaxNameLen));
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(name));
    KS_TRY_ASSIGN(const FidPtr d, get_fid(dfid));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView dv = view(*d), fv = view(*f);
    KS_TRY(check_path(dv));
    KS_TRY(check_path(fv));
    return root_.link(fv.path->get(), dv.path->get(), name);
}

ErrnoResult<void> P9Server::op_rename(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    uint32_t dfid = r.u32();
    std::string name(r.str(kMaxNameLen));
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(name));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    KS_TRY_ASSIGN(const FidPtr d, get_fid(dfid));
    const FidView v = view(*f), dv = view(*d);
    KS_TRY(check_path(v));
    KS_TRY(check_path(dv));
    if (!v.parent) return std::unexpected(EBUSY);
    KS_TRY(root_.rename_entry(v.path->get(), v.parent->get(), v.name, dv.path->get(), name));
    std::lock_guard lk(f->mu);
    f->parent = dv.path;
    f->name = name;
    return {};
}

ErrnoResult<void> P9Server::op_renameat(Reader& r, Writer&) {
    uint32_t olddir = r.u32();
    std::string oldname(r.str(kMaxNameLen));
    uint32_t newdir = r.u32();
    std::string newname(r.str(kMaxNameLen));
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(oldname));
    KS_TRY(shares::check_name(newname));
    KS_TRY_ASSIGN(const FidPtr o, get_fid(olddir));
    KS_TRY_ASSIGN(const FidPtr n, get_fid(newdir));
    const FidView ov = view(*o), nv = view(*n);
    KS_TRY(check_path(ov));
    KS_TRY(check_path(nv));
    return root_.rename(ov.path->get(), oldname, nv.path->get(), newname);
}

ErrnoResult<void> P9Server::op_unlinkat(Reader& r, Writer&) {
    uint32_t dfid = r.u32();
    std::string name(r.str(kMaxNameLen));
    uint32_t flags = r.u32();
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(name));
    if (flags & ~kUnlinkRemoveDir) return std::unexpected(EINVAL);
    KS_TRY_ASSIGN(const FidPtr d, get_fid(dfid));
    const FidView v = view(*d);
    KS_TRY(check_path(v));
    return root_.unlink(v.path->get(), name, (flags & kUnlinkRemoveDir) != 0);
}

ErrnoResult<void> P9Server::op_remove(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    P9_CHECK_READER(r);
    // The fid is clunked whether or not the removal succeeds.
    FidPtr f = take_fid(fid);
    if (!f) return std::unexpected(EBADF);
    KS_TRY(root_.check_writable());
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    if (!v.parent) return std::unexpected(EBUSY);  // the root, or reached by ".."
    return root_.remove_entry(v.path->get(), v.parent->get(), v.name);
}

}  // namespace kvmsandbox::p9
