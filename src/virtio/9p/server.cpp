#include "virtio/9p/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

namespace kvmsandbox::p9 {

namespace {

using SharedFd = std::shared_ptr<const UniqueFd>;

// Every resolution from a guest name: stay beneath the starting directory and
// never follow a symlink of any kind (the guest resolves its own symlinks).
constexpr uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

// Largest non-Twrite request we accept: Twalk with 16 maximal names, Tsymlink
// with a PATH_MAX target and Tattach with two long strings all fit.
constexpr size_t kMaxSmallRequest = 16384;
constexpr uint32_t kMinMsize = 4096;
constexpr size_t kMaxIov = 1024;    // IOV_MAX
constexpr size_t kMaxDepth = 4096;  // ".." ancestry check bound

}  // namespace

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

namespace {

struct FidView {
    FidKind kind = FidKind::kPath;
    SharedFd path, parent, open;
    std::string name;
    int open_flags = 0;
};

FidView view(Fid& f) {
    std::lock_guard lk(f.mu);
    return {f.kind, f.path, f.parent, f.open, f.name, f.open_flags};
}

ErrnoResult<void> errno_fail() {
    return std::unexpected(errno ? errno : EIO);
}

template <typename T>
ErrnoResult<T> fail_with(int e) {
    return std::unexpected(e);
}

SharedFd share(UniqueFd fd) {
    return std::make_shared<const UniqueFd>(std::move(fd));
}

ErrnoResult<UniqueFd> openat2_fd(int dir, const char* name, uint64_t flags, uint64_t mode) {
    open_how how{};
    how.flags = flags;
    how.mode = mode;
    how.resolve = kResolve;
    long fd;
    do {
        fd = syscall(SYS_openat2, dir, name, &how, sizeof how);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return std::unexpected(errno);
    return UniqueFd(static_cast<int>(fd));
}

ErrnoResult<struct stat> stat_fd(int fd) {
    struct stat st {};
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return std::unexpected(errno);
    return st;
}

ErrnoResult<struct stat> stat_at(int dir, const std::string& name) {
    struct stat st {};
    if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return std::unexpected(errno);
    return st;
}

uint64_t qid_path(uint64_t ino, uint64_t dev) {
    return ino ^ (dev << 48);
}

Qid make_qid(const struct stat& st) {
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
    q.path = qid_path(st.st_ino, st.st_dev);
    return q;
}

// A single path component created, linked, renamed or removed by the guest.
ErrnoResult<void> check_name(std::string_view name) {
    if (name.empty() || name == "." || name == "..") return std::unexpected(EINVAL);
    if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
        return std::unexpected(EINVAL);
    return {};
}

std::string proc_path(int fd) {
    return "/proc/self/fd/" + std::to_string(fd);
}

// Drops what a guest must not obtain on the host: set-uid anywhere, set-gid
// on files (on directories it only means "inherit the group").
mode_t sanitize_mode(uint32_t mode, bool is_dir) {
    mode_t m = mode & 07777;
    m &= ~S_ISUID;
    if (!is_dir) m &= ~S_ISGID;
    return m;
}

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

bool xattr_readable(std::string_view n) {
    return n.starts_with("user.") || n == "system.posix_acl_access" ||
           n == "system.posix_acl_default";
}

bool xattr_writable(std::string_view n) {
    return n.starts_with("user.") && n.size() > 5;
}

size_t iov_total(const P9Server::IoVecs& v) {
    size_t t = 0;
    for (const auto& s : v) t += s.size();
    return t;
}

// Copies out.size() bytes starting at byte `off` of v (short if v ends).
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

// iovecs for [off, off+len) of v, at most kMaxIov of them (the I/O is then
// short, which 9P allows). Returns the byte length covered.
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

}  // namespace

P9Server::P9Server(UniqueFd root_dir, bool read_only, Options options)
    : read_only_(read_only), options_(std::move(options)) {
    options_.max_msize = std::max(options_.max_msize, kMinMsize);
    msize_ = options_.max_msize;
    if (root_dir) {
        if (auto st = stat_fd(root_dir.get()); st && S_ISDIR(st->st_mode)) {
            root_dev_ = st->st_dev;
            root_ino_ = st->st_ino;
            root_ = share(std::move(root_dir));
        }
    }
    if (root_) {
        for (const auto& rel : options_.hidden) {
            auto fd = openat2_fd(root_->get(), rel.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
            if (!fd) continue;  // absent on this host: nothing to hide
            if (auto st = stat_fd(fd->get())) hidden_.insert({st->st_dev, st->st_ino});
        }
    }
    int pfd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (pfd >= 0) {
        // Reopening through /proc/self/fd is only sound if that is procfs.
        struct statfs sfs {};
        if (fstatfs(pfd, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC)
            proc_fd_.reset(pfd);
        else
            close(pfd);
    }
}

P9Server::~P9Server() = default;

Result<std::unique_ptr<P9Server>> P9Server::create(UniqueFd root_dir, bool read_only,
                                                   Options options) {
    if (!root_dir) return fail("9p: no share root directory");
    auto st = stat_fd(root_dir.get());
    if (!st) return failf("9p: share root: {}", std::strerror(st.error()));
    if (!S_ISDIR(st->st_mode)) return fail("9p: share root is not a directory");
    auto server = std::make_unique<P9Server>(std::move(root_dir), read_only, std::move(options));
    if (!server->proc_fd_) return fail("9p: /proc/self/fd is not available (procfs needed)");
    return server;
}

size_t P9Server::fid_count() const {
    std::lock_guard lk(table_mu_);
    return fids_.size();
}

ErrnoResult<P9Server::FidPtr> P9Server::get_fid(uint32_t id) const {
    std::lock_guard lk(table_mu_);
    auto it = fids_.find(id);
    if (it == fids_.end()) return std::unexpected(EBADF);
    return it->second;
}

ErrnoResult<void> P9Server::add_fid(uint32_t id, FidPtr fid, bool replace) {
    if (id == kNoFid) return std::unexpected(EBADF);
    std::lock_guard lk(table_mu_);
    auto it = fids_.find(id);
    if (it != fids_.end()) {
        // A fid still in use cannot be taken over, except by a walk onto itself.
        if (!replace) return std::unexpected(EEXIST);
        it->second = std::move(fid);
        return {};
    }
    if (fids_.size() >= options_.max_fids) return std::unexpected(EMFILE);
    fids_.emplace(id, std::move(fid));
    return {};
}

P9Server::FidPtr P9Server::take_fid(uint32_t id) {
    std::lock_guard lk(table_mu_);
    auto it = fids_.find(id);
    if (it == fids_.end()) return nullptr;
    FidPtr f = std::move(it->second);
    fids_.erase(it);
    return f;
}

ErrnoResult<bool> P9Server::is_root(int fd) const {
    auto st = stat_fd(fd);
    if (!st) return std::unexpected(st.error());
    return st->st_dev == root_dev_ && st->st_ino == root_ino_;
}

// ".." of a directory that is not the root. RESOLVE_BENEATH forbids ".." by
// construction, so this opens the parent plainly and then proves it is still
// beneath the root by climbing to it; reaching the host's "/" first means the
// directory was moved out of the share (by the host) and the walk is refused.
ErrnoResult<UniqueFd> P9Server::walk_dotdot(int dir_fd) const {
    int fd = openat(dir_fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return std::unexpected(errno);
    UniqueFd result(fd);
    UniqueFd cur;
    int probe = result.get();
    for (size_t depth = 0; depth < kMaxDepth; ++depth) {
        auto st = stat_fd(probe);
        if (!st) return std::unexpected(st.error());
        if (st->st_dev == root_dev_ && st->st_ino == root_ino_) return result;
        int up = openat(probe, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (up < 0) return std::unexpected(errno);
        UniqueFd upfd(up);
        auto ust = stat_fd(up);
        if (!ust) return std::unexpected(ust.error());
        if (ust->st_dev == st->st_dev && ust->st_ino == st->st_ino) return std::unexpected(EXDEV);
        cur = std::move(upfd);
        probe = cur.get();
    }
    return std::unexpected(ELOOP);
}

// Opens exactly the inode an O_PATH descriptor holds, with real access
// flags. Only regular files and directories: opening a symlink would follow
// it, and devices, fifos or sockets have no business being opened for the guest.
ErrnoResult<UniqueFd> P9Server::reopen(int path_fd, int flags) const {
    if (!proc_fd_) return std::unexpected(EOPNOTSUPP);
    auto st = stat_fd(path_fd);
    if (!st) return std::unexpected(st.error());
    if (S_ISLNK(st->st_mode)) return std::unexpected(ELOOP);
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode)) return std::unexpected(ENXIO);
    if (S_ISDIR(st->st_mode) && (flags & O_ACCMODE) != O_RDONLY) return std::unexpected(EISDIR);
    std::string n = std::to_string(path_fd);
    int fd;
    do {
        fd = openat(proc_fd_.get(), n.c_str(), (flags | O_CLOEXEC | O_NOCTTY) & ~O_CREAT);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return std::unexpected(errno);
    return UniqueFd(fd);
}

// Our umask must not change the mode the guest asked for (the guest already
// applied its own umask). Only a non-symlink found beneath dir_fd is touched.
ErrnoResult<void> P9Server::fix_mode(int dir_fd, const std::string& name, mode_t mode) const {
    auto fd = openat2_fd(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    if (!fd) return std::unexpected(fd.error());
    auto st = stat_fd(fd->get());
    if (!st) return std::unexpected(st.error());
    if (S_ISLNK(st->st_mode) || (st->st_mode & 07777) == mode) return {};
    if (fchmodat(AT_FDCWD, proc_path(fd->get()).c_str(), mode, 0) < 0) return errno_fail();
    return {};
}

size_t P9Server::handle(std::span<const uint8_t> request, std::span<uint8_t> response) {
    // The request bytes are only ever read; IoVecs is mutable so that guest
    // memory segments (writable either way) need no conversion.
    std::span<uint8_t> req(const_cast<uint8_t*>(request.data()), request.size());
    return handle(IoVecs(&req, 1), IoVecs(&response, 1));
}

size_t P9Server::handle(const IoVecs& request, const IoVecs& response) {
    const size_t resp_total = iov_total(response);
    if (resp_total < kReadHeaderSize) return 0;
    const size_t req_total = iov_total(request);

    std::array<uint8_t, kWriteHeaderSize> head{};
    size_t head_len = gather(request, 0, std::span(head).first(std::min(req_total, head.size())));
    uint16_t tag = head_len >= kHeaderSize ? static_cast<uint16_t>(head[5] | head[6] << 8) : kNoTag;

    auto reply_error = [&](int err) {
        std::array<uint8_t, kReadHeaderSize> buf{};
        size_t n = write_error(buf, tag, err);
        return scatter(response, 0, std::span(buf).first(n));
    };

    const size_t msize = negotiated_ ? msize_.load() : options_.max_msize;
    auto h = parse_header(std::span(head).first(head_len), req_total, msize);
    if (!h) return reply_error(h.error());
    const size_t cap = std::min(resp_total, msize);

    if (h->type == kTread) return do_read(*h, std::span(head).first(head_len), response, cap);
    if (h->type == kTwrite) return do_write(*h, std::span(head).first(head_len), request, response);

    if (req_total > kMaxSmallRequest) return reply_error(EMSGSIZE);
    // A private copy: the guest may rewrite its buffer while we work.
    // Not zeroed: exactly req_total bytes are copied in and nothing else is read.
    std::array<uint8_t, kMaxSmallRequest> req;  // NOLINT(cppcoreguidelines-pro-type-member-init)
    gather(request, 0, std::span(req).first(req_total));
    std::span<const uint8_t> body = std::span(req).subspan(kHeaderSize, req_total - kHeaderSize);

    // Replies are built in place when the response is one segment, else in a
    // per-thread scratch buffer that is then scattered.
    if (response.size() == 1) return dispatch(*h, body, response[0].first(cap));
    thread_local std::vector<uint8_t> scratch;
    if (scratch.size() < cap) scratch.resize(cap);
    size_t n = dispatch(*h, body, std::span(scratch).first(cap));
    return scatter(response, 0, std::span(scratch).first(n));
}

size_t P9Server::dispatch(const Header& h, std::span<const uint8_t> body, std::span<uint8_t> out) {
    Reader r(body);
    Writer w(out);
    w.begin(static_cast<uint8_t>(h.type + 1), h.tag);

    ErrnoResult<void> res;
    if (!negotiated_ && h.type != kTversion) {
        res = std::unexpected(EPROTO);  // nothing before Tversion
    } else if (!root_ && h.type != kTversion) {
        res = std::unexpected(EBADF);  // built on a bad root: nothing to serve
    } else {
        switch (h.type) {
            case kTversion:
                res = op_version(r, w);
                break;
            case kTauth:
                res = std::unexpected(EOPNOTSUPP);
                break;
            case kTattach:
                res = op_attach(r, w);
                break;
            case kTflush:
                // Requests never block for long here, so there is nothing to
                // cancel: the old request has been or will be answered.
                r.u16();
                if (!r.ok())
                    res = std::unexpected(r.error());
                else if (r.remaining() != 0)
                    res = std::unexpected(EPROTO);
                break;
            case kTwalk:
                res = op_walk(r, w);
                break;
            case kTlopen:
                res = op_lopen(r, w);
                break;
            case kTlcreate:
                res = op_lcreate(r, w);
                break;
            case kTclunk:
                res = op_clunk(r, w);
                break;
            case kTremove:
                res = op_remove(r, w);
                break;
            case kTgetattr:
                res = op_getattr(r, w);
                break;
            case kTsetattr:
                res = op_setattr(r, w);
                break;
            case kTreaddir:
                res = op_readdir(r, w);
                break;
            case kTmkdir:
                res = op_mkdir(r, w);
                break;
            case kTsymlink:
                res = op_symlink(r, w);
                break;
            case kTmknod:
                res = op_mknod(r, w);
                break;
            case kTlink:
                res = op_link(r, w);
                break;
            case kTrename:
                res = op_rename(r, w);
                break;
            case kTrenameat:
                res = op_renameat(r, w);
                break;
            case kTunlinkat:
                res = op_unlinkat(r, w);
                break;
            case kTreadlink:
                res = op_readlink(r, w);
                break;
            case kTstatfs:
                res = op_statfs(r, w);
                break;
            case kTfsync:
                res = op_fsync(r, w);
                break;
            case kTlock:
                res = op_lock(r, w);
                break;
            case kTgetlock:
                res = op_getlock(r, w);
                break;
            case kTxattrwalk:
                res = op_xattrwalk(r, w);
                break;
            case kTxattrcreate:
                res = op_xattrcreate(r, w);
                break;
            default:
                res = std::unexpected(EOPNOTSUPP);
                break;
        }
    }
    if (!res) return write_error(out, h.tag, res.error());
    size_t n = w.finish();
    // The reply did not fit the guest's buffer (or msize).
    if (n == 0) return write_error(out, h.tag, EMSGSIZE);
    return n;
}

// Handlers decode every field first and check the reader once: a truncated
// or over-long message is rejected before anything happens on the host.
#define P9_CHECK_READER(r)                                        \
    do {                                                          \
        if (!(r).ok()) return std::unexpected((r).error());       \
        if ((r).remaining() != 0) return std::unexpected(EPROTO); \
    } while (0)

// `var` names a new variable, so it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define P9_TRY(var, expr) \
    auto var = (expr);    \
    if (!var) return std::unexpected(var.error())
// NOLINTEND(bugprone-macro-parentheses)

#define P9_TRY_VOID(expr)                            \
    do {                                             \
        auto _r = (expr);                            \
        if (!_r) return std::unexpected(_r.error()); \
    } while (0)

ErrnoResult<void> P9Server::op_version(Reader& r, Writer& w) {
    uint32_t client_msize = r.u32();
    std::string_view version = r.str(64);
    P9_CHECK_READER(r);
    if (client_msize < kMinMsize) return std::unexpected(EINVAL);
    // A new session: every fid of the previous one is gone.
    {
        std::lock_guard lk(table_mu_);
        fids_.clear();
    }
    uint32_t m = std::min(client_msize, options_.max_msize);
    w.u32(m);
    if (version != "9P2000.L") {
        negotiated_ = false;
        w.str("unknown");
        return {};
    }
    msize_ = m;
    negotiated_ = true;
    w.str("9P2000.L");
    return {};
}

ErrnoResult<void> P9Server::op_attach(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint32_t afid = r.u32();
    r.str(kMaxPathLen);  // uname: the guest's claim; we act with our own credentials
    r.str(kMaxPathLen);  // aname: see the header; always the share root
    r.u32();             // n_uname
    P9_CHECK_READER(r);
    if (afid != kNoFid) return std::unexpected(EINVAL);  // Tauth never succeeds
    P9_TRY(st, stat_fd(root_->get()));
    auto f = std::make_shared<Fid>();
    f->path = root_;
    P9_TRY_VOID(add_fid(fid, std::move(f), false));
    w.qid(make_qid(*st));
    return {};
}

ErrnoResult<void> P9Server::op_walk(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint32_t newfid = r.u32();
    uint16_t nwname = r.u16();
    if (r.ok() && nwname > kMaxWalkNames) return std::unexpected(EINVAL);
    std::array<std::string_view, kMaxWalkNames> names;
    for (uint16_t i = 0; i < nwname && r.ok(); ++i) names[i] = r.str(kMaxNameLen);
    P9_CHECK_READER(r);

    P9_TRY(src, get_fid(fid));
    FidView v = view(**src);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (newfid != fid) {
        if (newfid == kNoFid) return std::unexpected(EBADF);
        if (get_fid(newfid)) return std::unexpected(EEXIST);
    }

    SharedFd cur = v.path, parent = v.parent;
    std::string name = v.name;
    std::array<Qid, kMaxWalkNames> qids;
    size_t nq = 0;
    int err = 0;
    for (uint16_t i = 0; i < nwname; ++i) {
        std::string_view n = names[i];
        if (n == ".") {
            // The Linux client never sends it; harmless as a no-op.
        } else if (n == "..") {
            auto root = is_root(cur->get());
            if (!root) {
                err = root.error();
                break;
            }
            if (*root) {
                parent.reset();
                name.clear();
            } else {
                auto up = walk_dotdot(cur->get());
                if (!up) {
                    err = up.error();
                    break;
                }
                cur = share(std::move(*up));
                // Its own parent and name are unknown: rename/remove through
                // this fid will fail, which no client relies on.
                parent.reset();
                name.clear();
            }
        } else {
            if (auto ok = check_name(n); !ok) {
                err = ok.error();
                break;
            }
            std::string s(n);
            auto next = openat2_fd(cur->get(), s.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
            if (!next) {
                err = next.error();
                break;
            }
            parent = cur;
            name = std::move(s);
            cur = share(std::move(*next));
        }
        auto st = stat_fd(cur->get());
        if (!st) {
            err = st.error();
            break;
        }
        if (is_hidden(st->st_dev, st->st_ino)) {
            err = ENOENT;
            break;
        }
        qids[nq++] = make_qid(*st);
    }
    if (nq == 0 && nwname > 0) return std::unexpected(err);
    if (nq == nwname) {
        auto f = std::make_shared<Fid>();
        f->path = cur;
        f->parent = parent;
        f->name = name;
        P9_TRY_VOID(add_fid(newfid, std::move(f), newfid == fid));
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
    P9_TRY(f, get_fid(fid));
    P9_TRY(hflags, map_open_flags(flags));
    if (read_only_ && ((*hflags & O_ACCMODE) != O_RDONLY || (*hflags & O_TRUNC)))
        return std::unexpected(EROFS);
    std::lock_guard lk((*f)->mu);
    Fid& fd = **f;
    if (fd.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (fd.open) return std::unexpected(EINVAL);  // opened twice
    P9_TRY(st, stat_fd(fd.path->get()));
    P9_TRY(opened, reopen(fd.path->get(), *hflags));
    fd.open = share(std::move(*opened));
    fd.open_flags = *hflags;
    w.qid(make_qid(*st));
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
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(name));
    P9_TRY(f, get_fid(fid));
    P9_TRY(hflags, map_open_flags(flags));
    if (*hflags & O_DIRECTORY) return std::unexpected(EINVAL);
    const mode_t m = sanitize_mode(mode, false);

    std::lock_guard lk((*f)->mu);
    Fid& fd = **f;
    if (fd.kind != FidKind::kPath || fd.open) return std::unexpected(EBADF);
    const int dir = fd.path->get();
    // O_NOFOLLOW: never create or open through a symlink; O_NONBLOCK: an
    // existing fifo must not hang the worker (cleared again below).
    const uint64_t base = static_cast<uint64_t>(*hflags) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    bool created = true;
    auto opened = openat2_fd(dir, name.c_str(), base | O_CREAT | O_EXCL, m);
    if (!opened && opened.error() == EEXIST && !(flags & kDotlExcl)) {
        created = false;
        opened = openat2_fd(dir, name.c_str(), base, 0);
    }
    if (!opened) return std::unexpected(opened.error());
    P9_TRY(st, stat_fd(opened->get()));
    if (!S_ISREG(st->st_mode)) return std::unexpected(created ? EIO : ENXIO);
    if (!(*hflags & O_NONBLOCK)) fcntl(opened->get(), F_SETFL, *hflags & ~O_NONBLOCK);
    if (created && (st->st_mode & 07777) != m) {
        if (fchmod(opened->get(), m) == 0) st->st_mode = (st->st_mode & ~07777) | m;
    }
    int pfd = openat(proc_fd_.get(), std::to_string(opened->get()).c_str(), O_PATH | O_CLOEXEC);
    if (pfd < 0) return errno_fail();
    fd.parent = fd.path;
    fd.path = share(UniqueFd(pfd));
    fd.name = name;
    fd.open = share(std::move(*opened));
    fd.open_flags = *hflags;
    w.qid(make_qid(*st));
    w.u32(0);
    return {};
}

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
            std::vector<iovec> iov;
            size_t len = build_iov(response, kReadHeaderSize, want, iov);
            ssize_t n = 0;
            if (len > 0) {
                do {
                    n = preadv(file->get(), iov.data(), static_cast<int>(iov.size()),
                               static_cast<off_t>(offset));
                } while (n < 0 && errno == EINTR);
                if (n < 0) return error(errno);
            }
            got = static_cast<size_t>(n);
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
            if (read_only_) return error(EROFS);
            SharedFd file = fd.open;
            lk.unlock();
            std::vector<iovec> iov;
            size_t len = build_iov(request, kWriteHeaderSize, count, iov);
            ssize_t n = 0;
            if (len > 0) {
                do {
                    n = pwritev(file->get(), iov.data(), static_cast<int>(iov.size()),
                                static_cast<off_t>(offset));
                } while (n < 0 && errno == EINTR);
                if (n < 0) return error(errno);
            }
            done = static_cast<size_t>(n);
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

ErrnoResult<void> P9Server::apply_xattr(Fid& f) {
    if (f.xattr_written != f.xattr.size()) return std::unexpected(EINVAL);
    auto st = stat_fd(f.path->get());
    if (!st) return std::unexpected(st.error());
    if (S_ISLNK(st->st_mode)) return std::unexpected(EOPNOTSUPP);
    std::string p = proc_path(f.path->get());
    int rc;
    if (f.xattr.empty())
        rc = removexattr(p.c_str(), f.xattr_name.c_str());
    else
        rc = setxattr(p.c_str(), f.xattr_name.c_str(), f.xattr.data(), f.xattr.size(),
                      static_cast<int>(f.xattr_flags));
    if (rc < 0) return errno_fail();
    return {};
}

ErrnoResult<void> P9Server::op_clunk(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    P9_CHECK_READER(r);
    FidPtr f = take_fid(fid);
    if (!f) return std::unexpected(EBADF);
    std::lock_guard lk(f->mu);
    if (f->kind == FidKind::kXattrWrite) return apply_xattr(*f);
    return {};
}

ErrnoResult<void> P9Server::op_remove(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    P9_CHECK_READER(r);
    // The fid is clunked whether or not the removal succeeds.
    FidPtr f = take_fid(fid);
    if (!f) return std::unexpected(EBADF);
    if (read_only_) return std::unexpected(EROFS);
    FidView v = view(*f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (!v.parent) return std::unexpected(EBUSY);  // the root, or reached by ".."
    P9_TRY(st, stat_fd(v.path->get()));
    // The name may meanwhile denote another file: only remove our own.
    P9_TRY(cur, stat_at(v.parent->get(), v.name));
    if (cur->st_dev != st->st_dev || cur->st_ino != st->st_ino) return std::unexpected(ENOENT);
    if (unlinkat(v.parent->get(), v.name.c_str(), S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0) < 0)
        return errno_fail();
    return {};
}

ErrnoResult<void> P9Server::op_getattr(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    r.u64();  // request_mask: we always answer the basic set
    P9_CHECK_READER(r);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    P9_TRY(st, stat_fd(v.path->get()));
    w.u64(kGetattrBasic);
    w.qid(make_qid(*st));
    w.u32(st->st_mode);
    w.u32(st->st_uid);
    w.u32(st->st_gid);
    w.u64(st->st_nlink);
    w.u64(st->st_rdev);
    w.u64(static_cast<uint64_t>(st->st_size));
    w.u64(static_cast<uint64_t>(st->st_blksize));
    w.u64(static_cast<uint64_t>(st->st_blocks));
    w.u64(static_cast<uint64_t>(st->st_atim.tv_sec));
    w.u64(static_cast<uint64_t>(st->st_atim.tv_nsec));
    w.u64(static_cast<uint64_t>(st->st_mtim.tv_sec));
    w.u64(static_cast<uint64_t>(st->st_mtim.tv_nsec));
    w.u64(static_cast<uint64_t>(st->st_ctim.tv_sec));
    w.u64(static_cast<uint64_t>(st->st_ctim.tv_nsec));
    for (int i = 0; i < 4; ++i) w.u64(0);  // btime sec/nsec, gen, data_version
    return {};
}

ErrnoResult<void> P9Server::op_setattr(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    uint32_t valid = r.u32();
    uint32_t mode = r.u32();
    uint32_t uid = r.u32();
    uint32_t gid = r.u32();
    uint64_t size = r.u64();
    uint64_t atime_sec = r.u64();
    uint64_t atime_nsec = r.u64();
    uint64_t mtime_sec = r.u64();
    uint64_t mtime_nsec = r.u64();
    P9_CHECK_READER(r);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (read_only_ && valid != 0) return std::unexpected(EROFS);
    const int pfd = v.path->get();
    P9_TRY(st, stat_fd(pfd));
    const bool is_link = S_ISLNK(st->st_mode);

    if (valid & kSetattrMode) {
        if (is_link) return std::unexpected(EOPNOTSUPP);
        mode_t m = sanitize_mode(mode, S_ISDIR(st->st_mode));
        if (fchmodat(AT_FDCWD, proc_path(pfd).c_str(), m, 0) < 0) return errno_fail();
    }
    if (valid & (kSetattrUid | kSetattrGid)) {
        // Only what the host lets us do; EPERM passes through to the guest.
        uid_t u = (valid & kSetattrUid) ? uid : static_cast<uid_t>(-1);
        gid_t g = (valid & kSetattrGid) ? gid : static_cast<gid_t>(-1);
        if (fchownat(pfd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return errno_fail();
    }
    if (valid & kSetattrSize) {
        if (size > static_cast<uint64_t>(INT64_MAX)) return std::unexpected(EINVAL);
        if (S_ISDIR(st->st_mode)) return std::unexpected(EISDIR);
        if (!S_ISREG(st->st_mode)) return std::unexpected(EINVAL);
        SharedFd file = v.open;
        if (!file || (v.open_flags & O_ACCMODE) == O_RDONLY) {
            P9_TRY(opened, reopen(pfd, O_WRONLY));
            file = share(std::move(*opened));
        }
        if (ftruncate(file->get(), static_cast<off_t>(size)) < 0) return errno_fail();
    }
    if (valid & (kSetattrAtime | kSetattrMtime)) {
        timespec ts[2];
        auto set = [](timespec& t, bool on, bool given, uint64_t s, uint64_t ns) {
            if (!on) {
                t = {0, UTIME_OMIT};
            } else if (!given) {
                t = {0, UTIME_NOW};
            } else {
                t.tv_sec = static_cast<time_t>(s);
                t.tv_nsec = static_cast<long>(ns);  // out of range: EINVAL from the kernel
            }
        };
        set(ts[0], valid & kSetattrAtime, valid & kSetattrAtimeSet, atime_sec, atime_nsec);
        set(ts[1], valid & kSetattrMtime, valid & kSetattrMtimeSet, mtime_sec, mtime_nsec);
        if ((atime_nsec > 999999999 && (valid & kSetattrAtimeSet)) ||
            (mtime_nsec > 999999999 && (valid & kSetattrMtimeSet)))
            return std::unexpected(EINVAL);
        if (utimensat(pfd, "", ts, AT_EMPTY_PATH) < 0) {
            // Older kernels lack AT_EMPTY_PATH here; the /proc path works for
            // everything but symlinks.
            if (errno != EINVAL || is_link) return errno_fail();
            if (utimensat(AT_FDCWD, proc_path(pfd).c_str(), ts, 0) < 0) return errno_fail();
        }
    }
    // kSetattrCtime alone: any change above already updated ctime.
    return {};
}

ErrnoResult<void> P9Server::op_readdir(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint64_t offset = r.u64();
    uint32_t count = r.u32();
    P9_CHECK_READER(r);
    if (offset > static_cast<uint64_t>(INT64_MAX)) return std::unexpected(EINVAL);
    P9_TRY(f, get_fid(fid));
    // Holding the fid lock: the directory position is shared state.
    std::lock_guard lk((*f)->mu);
    Fid& fd = **f;
    if (fd.kind != FidKind::kPath || !fd.open) return std::unexpected(EBADF);
    const int dfd = fd.open->get();
    P9_TRY(dst, stat_fd(dfd));
    if (!S_ISDIR(dst->st_mode)) return std::unexpected(ENOTDIR);

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
        for (long pos = 0; pos < n;) {
            struct Dirent64 {
                uint64_t d_ino;
                int64_t d_off;
                uint16_t d_reclen;
                uint8_t d_type;
                char d_name[];
            };
            auto* d = reinterpret_cast<Dirent64*>(buf.data() + pos);
            if (d->d_reclen == 0) break;
            pos += d->d_reclen;
            if (is_hidden(dst->st_dev, static_cast<ino_t>(d->d_ino))) continue;
            size_t nlen = strnlen(d->d_name, kMaxNameLen + 1);
            size_t entry = kQidSize + 8 + 1 + 2 + nlen;
            if (used + entry > limit) {
                full = true;
                break;
            }
            Qid q;
            q.type = d->d_type == DT_DIR ? kQtDir : d->d_type == DT_LNK ? kQtSymlink : kQtFile;
            q.path = qid_path(d->d_ino, dst->st_dev);
            w.qid(q);
            w.u64(static_cast<uint64_t>(d->d_off));
            w.u8(d->d_type);
            w.str(std::string_view(d->d_name, nlen));
            used += entry;
        }
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
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(name));
    P9_TRY(f, get_fid(dfid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    mode_t m = sanitize_mode(mode, true);
    if (mkdirat(v.path->get(), name.c_str(), m) < 0) return errno_fail();
    (void)fix_mode(v.path->get(), name, m);  // best effort: the directory exists
    P9_TRY(st, stat_at(v.path->get(), name));
    w.qid(make_qid(*st));
    return {};
}

ErrnoResult<void> P9Server::op_symlink(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    std::string name(r.str(kMaxNameLen));
    std::string target(r.str(kMaxPathLen));
    r.u32();  // gid
    P9_CHECK_READER(r);
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(name));
    // Stored as is: only the guest ever resolves it.
    if (target.empty() || target.find('\0') != std::string::npos) return std::unexpected(EINVAL);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (symlinkat(target.c_str(), v.path->get(), name.c_str()) < 0) return errno_fail();
    P9_TRY(st, stat_at(v.path->get(), name));
    w.qid(make_qid(*st));
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
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(name));
    mode_t type = mode & S_IFMT;
    if (type == S_IFCHR || type == S_IFBLK) return std::unexpected(EPERM);  // no devices, ever
    if (type == 0) type = S_IFREG;
    if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK) return std::unexpected(EINVAL);
    P9_TRY(f, get_fid(dfid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    mode_t m = sanitize_mode(mode, false);
    if (mknodat(v.path->get(), name.c_str(), type | m, 0) < 0) return errno_fail();
    (void)fix_mode(v.path->get(), name, m);
    P9_TRY(st, stat_at(v.path->get(), name));
    w.qid(make_qid(*st));
    return {};
}

ErrnoResult<void> P9Server::op_link(Reader& r, Writer&) {
    uint32_t dfid = r.u32();
    uint32_t fid = r.u32();
    std::string name(r.str(kMaxNameLen));
    P9_CHECK_READER(r);
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(name));
    P9_TRY(d, get_fid(dfid));
    P9_TRY(f, get_fid(fid));
    FidView dv = view(**d), fv = view(**f);
    if (dv.kind != FidKind::kPath || fv.kind != FidKind::kPath) return std::unexpected(EBADF);
    P9_TRY(st, stat_fd(fv.path->get()));
    if (S_ISDIR(st->st_mode)) return std::unexpected(EPERM);
    // linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; following the
    // /proc magic link of our O_PATH fd links exactly that inode without it.
    if (linkat(AT_FDCWD, proc_path(fv.path->get()).c_str(), dv.path->get(), name.c_str(),
               AT_SYMLINK_FOLLOW) < 0)
        return errno_fail();
    return {};
}

ErrnoResult<void> P9Server::op_rename(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    uint32_t dfid = r.u32();
    std::string name(r.str(kMaxNameLen));
    P9_CHECK_READER(r);
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(name));
    P9_TRY(f, get_fid(fid));
    P9_TRY(d, get_fid(dfid));
    FidView v = view(**f), dv = view(**d);
    if (v.kind != FidKind::kPath || dv.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (!v.parent) return std::unexpected(EBUSY);
    P9_TRY(st, stat_fd(v.path->get()));
    P9_TRY(cur, stat_at(v.parent->get(), v.name));
    if (cur->st_dev != st->st_dev || cur->st_ino != st->st_ino) return std::unexpected(ENOENT);
    if (renameat(v.parent->get(), v.name.c_str(), dv.path->get(), name.c_str()) < 0)
        return errno_fail();
    std::lock_guard lk((*f)->mu);
    (*f)->parent = dv.path;
    (*f)->name = name;
    return {};
}

ErrnoResult<void> P9Server::op_renameat(Reader& r, Writer&) {
    uint32_t olddir = r.u32();
    std::string oldname(r.str(kMaxNameLen));
    uint32_t newdir = r.u32();
    std::string newname(r.str(kMaxNameLen));
    P9_CHECK_READER(r);
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(oldname));
    P9_TRY_VOID(check_name(newname));
    P9_TRY(o, get_fid(olddir));
    P9_TRY(n, get_fid(newdir));
    FidView ov = view(**o), nv = view(**n);
    if (ov.kind != FidKind::kPath || nv.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (renameat(ov.path->get(), oldname.c_str(), nv.path->get(), newname.c_str()) < 0)
        return errno_fail();
    return {};
}

ErrnoResult<void> P9Server::op_unlinkat(Reader& r, Writer&) {
    uint32_t dfid = r.u32();
    std::string name(r.str(kMaxNameLen));
    uint32_t flags = r.u32();
    P9_CHECK_READER(r);
    if (read_only_) return std::unexpected(EROFS);
    P9_TRY_VOID(check_name(name));
    if (flags & ~kUnlinkRemoveDir) return std::unexpected(EINVAL);
    P9_TRY(d, get_fid(dfid));
    FidView v = view(**d);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (unlinkat(v.path->get(), name.c_str(), (flags & kUnlinkRemoveDir) ? AT_REMOVEDIR : 0) < 0)
        return errno_fail();
    return {};
}

ErrnoResult<void> P9Server::op_readlink(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    P9_CHECK_READER(r);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    P9_TRY(st, stat_fd(v.path->get()));
    if (!S_ISLNK(st->st_mode)) return std::unexpected(EINVAL);
    std::array<char, kMaxPathLen + 1> buf{};
    ssize_t n = readlinkat(v.path->get(), "", buf.data(), buf.size());
    if (n < 0) return errno_fail();
    if (static_cast<size_t>(n) > kMaxPathLen) return std::unexpected(ENAMETOOLONG);
    w.str(std::string_view(buf.data(), static_cast<size_t>(n)));
    return {};
}

ErrnoResult<void> P9Server::op_statfs(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    P9_CHECK_READER(r);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    struct statfs s {};
    if (fstatfs(v.path->get(), &s) < 0) return errno_fail();
    uint64_t fsid;
    static_assert(sizeof s.f_fsid == sizeof fsid);
    std::memcpy(&fsid, &s.f_fsid, sizeof fsid);
    w.u32(static_cast<uint32_t>(s.f_type));
    w.u32(static_cast<uint32_t>(s.f_bsize));
    w.u64(s.f_blocks);
    w.u64(s.f_bfree);
    w.u64(s.f_bavail);
    w.u64(s.f_files);
    w.u64(s.f_ffree);
    w.u64(fsid);
    w.u32(static_cast<uint32_t>(s.f_namelen));
    return {};
}

ErrnoResult<void> P9Server::op_fsync(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    // Linux sends datasync[4] after the fid; older clients did not.
    uint32_t datasync = r.remaining() >= 4 ? r.u32() : 0;
    P9_CHECK_READER(r);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    SharedFd file = v.open;
    if (!file) {
        P9_TRY(opened, reopen(v.path->get(), O_RDONLY));
        file = share(std::move(*opened));
    }
    if ((datasync ? fdatasync(file->get()) : fsync(file->get())) < 0) return errno_fail();
    return {};
}

namespace {

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
    P9_TRY(lt, lock_type(type));
    if (start > static_cast<uint64_t>(INT64_MAX) || length > static_cast<uint64_t>(INT64_MAX))
        return std::unexpected(EINVAL);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath || !v.open) return std::unexpected(EBADF);
    // OFD locks belong to the open file description of this fid, so two guest
    // opens conflict as they would locally, and the worker thread is irrelevant.
    struct flock fl {};
    fl.l_type = *lt;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(start);
    fl.l_len = static_cast<off_t>(length);
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
    P9_TRY(lt, lock_type(type));
    if (start > static_cast<uint64_t>(INT64_MAX) || length > static_cast<uint64_t>(INT64_MAX))
        return std::unexpected(EINVAL);
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath || !v.open) return std::unexpected(EBADF);
    struct flock fl {};
    fl.l_type = *lt;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(start);
    fl.l_len = static_cast<off_t>(length);
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
    P9_TRY(f, get_fid(fid));
    FidView v = view(**f);
    if (v.kind != FidKind::kPath) return std::unexpected(EBADF);
    if (newfid != fid && get_fid(newfid)) return std::unexpected(EEXIST);
    P9_TRY(st, stat_fd(v.path->get()));
    const bool is_link = S_ISLNK(st->st_mode);
    const std::string p = proc_path(v.path->get());

    std::vector<uint8_t> value;
    if (name.empty()) {
        // List, filtered to the names the guest may read.
        if (!is_link) {
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
        }
    } else {
        if (!xattr_readable(name)) return std::unexpected(EOPNOTSUPP);
        if (is_link) return std::unexpected(ENODATA);
        value.resize(kMaxXattrSize);
        ssize_t n = getxattr(p.c_str(), name.c_str(), value.data(), value.size());
        if (n < 0) return std::unexpected(errno == ERANGE ? E2BIG : errno);
        value.resize(static_cast<size_t>(n));
    }
    auto nf = std::make_shared<Fid>();
    nf->kind = FidKind::kXattrRead;
    nf->path = v.path;
    nf->xattr_charge = XattrCharge::take(xattr_bytes_, value.size(), options_.max_xattr_bytes);
    if (!nf->xattr_charge) return std::unexpected(ENOMEM);
    nf->xattr = std::move(value);
    const uint64_t size = nf->xattr.size();
    P9_TRY_VOID(add_fid(newfid, std::move(nf), newfid == fid));
    w.u64(size);
    return {};
}

ErrnoResult<void> P9Server::op_xattrcreate(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    std::string name(r.str(kMaxXattrNameLen));
    uint64_t size = r.u64();
    uint32_t flags = r.u32();
    P9_CHECK_READER(r);
    if (read_only_) return std::unexpected(EROFS);
    if (name.find('\0') != std::string::npos) return std::unexpected(EINVAL);
    if (!xattr_writable(name)) return std::unexpected(EOPNOTSUPP);
    if (size > kMaxXattrSize) return std::unexpected(E2BIG);
    if (flags & ~static_cast<uint32_t>(XATTR_CREATE | XATTR_REPLACE))
        return std::unexpected(EINVAL);
    P9_TRY(f, get_fid(fid));
    std::lock_guard lk((*f)->mu);
    Fid& fd = **f;
    if (fd.kind != FidKind::kPath || fd.open) return std::unexpected(EBADF);
    auto charge = XattrCharge::take(xattr_bytes_, size, options_.max_xattr_bytes);
    if (!charge) return std::unexpected(ENOMEM);
    // The fid becomes the attribute: Twrite fills it, Tclunk sets it.
    fd.kind = FidKind::kXattrWrite;
    fd.xattr_charge = std::move(charge);
    fd.xattr.assign(size, 0);
    fd.xattr_name = name;
    fd.xattr_flags = flags;
    fd.xattr_written = 0;
    return {};
}

#undef P9_CHECK_READER
#undef P9_TRY
#undef P9_TRY_VOID

}  // namespace kvmsandbox::p9
