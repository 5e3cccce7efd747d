// Twalk, Tlopen and Tlcreate: how a guest reaches an object and opens it.
// Each walk step goes through the share core (one component beneath the
// previous descriptor, ".." kept beneath the root, hidden and, on system
// shares, not world-readable entries absent);
// opening reopens the walked inode itself, never a path.
#include <fcntl.h>

#include <array>
#include <cerrno>
#include <optional>
#include <string>
#include <string_view>

#include "virtio/9p/server.h"
#include "virtio/9p/server_internal.h"

namespace kvmsandbox::p9 {

namespace {

// Protocol open flags to host flags. Flags that change what gets opened
// (CREAT, EXCL, NOFOLLOW) or are host-process business (CLOEXEC, FASYNC,
// NOCTTY, DIRECT, NOATIME) are dropped; the reopen path decides them.
ErrnoResult<int> map_open_flags(uint32_t f) {
    int h = 0;
    switch (f & kDotlAccMode) {
        case 0:
            h = O_RDONLY;
            break;
        case kDotlWronly:
            h = O_WRONLY;
            break;
        case kDotlRdwr:
            h = O_RDWR;
            break;
        default:
            return std::unexpected(EINVAL);
    }
    if (f & kDotlTrunc) h |= O_TRUNC;
    if (f & kDotlAppend) h |= O_APPEND;
    if (f & kDotlNonblock) h |= O_NONBLOCK;
    if (f & kDotlDsync) h |= O_DSYNC;
    if (f & kDotlSync) h |= O_SYNC;
    if (f & kDotlDirectory) h |= O_DIRECTORY;
    if (f & kDotlLargefile) h |= O_LARGEFILE;
    return h | O_CLOEXEC | O_NOCTTY;
}

// Where a walk stands: the object, the directory it was reached from and its
// name there (both unknown after ".." and at the root). cur_st: the stat of
// cur once known (the visibility rule looks at the directory's mode).
struct WalkPos {
    SharedFd cur, parent;
    std::string name;
    std::optional<struct stat> cur_st;
};

// One walk step; on success `pos` is the new object and its stat is returned.
ErrnoResult<struct stat> walk_step(const shares::ConfinedRoot& root, WalkPos& pos,
                                   std::string_view n) {
    if (n == ".") {
        // The Linux client never sends it; harmless as a no-op.
        KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(pos.cur->get()));
        KS_TRY(root.check_visible(st));
        pos.cur_st = st;
        return st;
    }
    if (n == "..") {
        KS_TRY_ASSIGN(const bool at_root, root.is_root(pos.cur->get()));
        SharedFd up_fd = pos.cur;
        if (!at_root) {
            KS_TRY_ASSIGN(UniqueFd up, root.parent_of(pos.cur->get()));
            up_fd = share(std::move(up));
        }
        KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(up_fd->get()));
        KS_TRY(root.check_parent(st));
        pos.cur = std::move(up_fd);
        pos.cur_st = st;
        // Its own parent and name are unknown: rename/remove through this
        // fid will fail, which no client relies on.
        pos.parent.reset();
        pos.name.clear();
        return st;
    }
    // The directory's mode matters only under the visibility rule: other
    // shares spend no stat on it.
    if (root.world_readable_only() && !pos.cur_st) {
        KS_TRY_ASSIGN(pos.cur_st, shares::stat_fd(pos.cur->get()));
    }
    KS_TRY_ASSIGN(UniqueFd next, shares::ConfinedRoot::lookup(pos.cur->get(), n));
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(next.get()));
    // Without the rule check_step ignores the directory's stat.
    KS_TRY(root.check_step(pos.cur_st.value_or(st), st));
    pos.parent = pos.cur;
    pos.name = std::string(n);
    pos.cur = share(std::move(next));
    pos.cur_st = st;
    return st;
}

}  // namespace

ErrnoResult<void> P9Server::op_walk(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint32_t newfid = r.u32();
    uint16_t nwname = r.u16();
    if (r.ok() && nwname > kMaxWalkNames) return std::unexpected(EINVAL);
    std::array<std::string_view, kMaxWalkNames> names;
    for (uint16_t i = 0; i < nwname && r.ok(); ++i) names[i] = r.str(kMaxNameLen);
    P9_CHECK_READER(r);

    KS_TRY_ASSIGN(const FidPtr src, get_fid(fid));
    const FidView v = view(*src);
    KS_TRY(check_path(v));
    if (newfid != fid) {
        if (newfid == kNoFid) return std::unexpected(EBADF);
        if (get_fid(newfid)) return std::unexpected(EEXIST);
    }

    WalkPos pos{v.path, v.parent, v.name, std::nullopt};
    std::array<Qid, kMaxWalkNames> qids;
    size_t nq = 0;
    int err = 0;
    for (uint16_t i = 0; i < nwname; ++i) {
        auto st = walk_step(root_, pos, names[i]);
        if (!st) {
            err = st.error();
            break;
        }
        qids[nq++] = make_qid(*st);
    }
    if (nq == 0 && nwname > 0) return std::unexpected(err);
    if (nq == nwname) {
        auto f = std::make_shared<Fid>();
        f->path = pos.cur;
        f->parent = pos.parent;
        f->name = pos.name;
        KS_TRY(add_fid(newfid, std::move(f), newfid == fid));
    }
    // A partial walk answers the qids it found and creates no fid.
    w.u16(static_cast<uint16_t>(nq));
    for (size_t i = 0; i < nq; ++i) w.qid(qids[i]);
    return {};
}

ErrnoResult<void> P9Server::op_lopen(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint32_t flags = r.u32();
    P9_CHECK_READER(r);
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    KS_TRY_ASSIGN(const int hflags, map_open_flags(flags));
    KS_TRY(root_.check_open_flags(hflags));
    std::lock_guard lk(f->mu);
    if (f->kind != FidKind::kPath) return std::unexpected(EBADF);
    if (f->open) return std::unexpected(EINVAL);  // opened twice
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(f->path->get()));
    KS_TRY_ASSIGN(UniqueFd opened, root_.reopen(f->path->get(), hflags));
    f->open = share(std::move(opened));
    f->open_flags = hflags;
    w.qid(make_qid(st));
    w.u32(0);  // iounit 0: the client uses msize
    return {};
}

ErrnoResult<void> P9Server::op_lcreate(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    std::string name(r.str(kMaxNameLen));
    uint32_t flags = r.u32();
    uint32_t mode = r.u32();
    r.u32();  // gid: ignored, files belong to the caller
    P9_CHECK_READER(r);
    KS_TRY(root_.check_writable());
    KS_TRY(shares::check_name(name));
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    KS_TRY_ASSIGN(const int hflags, map_open_flags(flags));
    if (hflags & O_DIRECTORY) return std::unexpected(EINVAL);

    std::lock_guard lk(f->mu);
    if (f->kind != FidKind::kPath || f->open) return std::unexpected(EBADF);
    KS_TRY_ASSIGN(auto created,
                  root_.create_file(f->path->get(), name, hflags, mode, flags & kDotlExcl));
    f->parent = f->path;
    f->path = share(std::move(created.path));
    f->name = name;
    f->open = share(std::move(created.file));
    f->open_flags = hflags;
    w.qid(make_qid(created.st));
    w.u32(0);
    return {};
}

}  // namespace kvmsandbox::p9
