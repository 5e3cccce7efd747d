// Attribute and file-system requests: Tgetattr, Tsetattr, Treadlink, Tstatfs,
// Tfsync. chmod goes through the share core (set-id bits stripped); ownership
// changes are whatever the host lets our own credentials do.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "virtio/9p/server.h"
#include "virtio/9p/server_internal.h"

namespace kvmsandbox::p9 {

namespace {

// Tsetattr's fields after the fid.
struct SetattrReq {
    uint32_t valid, mode, uid, gid;
    uint64_t size, atime_sec, atime_nsec, mtime_sec, mtime_nsec;
};

// Explicit times keep their nanoseconds here. Linux's v9fs client sends whole
// seconds only: it never lowers its superblock's s_time_gran from the VFS
// default of 1 s, so notify_change truncates utimensat's times in the guest
// before the request is built (host-made times, UTIME_NOW and everything in
// Rgetattr do keep their nanoseconds).
ErrnoResult<void> set_times(int pfd, bool is_link, const SetattrReq& q) {
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
    const uint32_t valid = q.valid;
    set(ts[0], valid & kSetattrAtime, valid & kSetattrAtimeSet, q.atime_sec, q.atime_nsec);
    set(ts[1], valid & kSetattrMtime, valid & kSetattrMtimeSet, q.mtime_sec, q.mtime_nsec);
    if ((q.atime_nsec > 999999999 && (valid & kSetattrAtimeSet)) ||
        (q.mtime_nsec > 999999999 && (valid & kSetattrMtimeSet)))
        return std::unexpected(EINVAL);
    if (utimensat(pfd, "", ts, AT_EMPTY_PATH) < 0) {
        // Older kernels lack AT_EMPTY_PATH here; the /proc path works for
        // everything but symlinks.
        if (errno != EINVAL || is_link) return errno_fail();
        if (utimensat(AT_FDCWD, shares::fd_path(pfd).c_str(), ts, 0) < 0) return errno_fail();
    }
    return {};
}

}  // namespace

ErrnoResult<void> P9Server::op_getattr(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    r.u64();  // request_mask: we always answer the basic set
    P9_CHECK_READER(r);
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(v.path->get()));
    w.u64(kGetattrBasic);
    w.qid(make_qid(st));
    w.u32(st.st_mode);
    w.u32(st.st_uid);
    w.u32(st.st_gid);
    w.u64(st.st_nlink);
    w.u64(st.st_rdev);
    w.u64(static_cast<uint64_t>(st.st_size));
    w.u64(static_cast<uint64_t>(st.st_blksize));
    w.u64(static_cast<uint64_t>(st.st_blocks));
    w.u64(static_cast<uint64_t>(st.st_atim.tv_sec));
    w.u64(static_cast<uint64_t>(st.st_atim.tv_nsec));
    w.u64(static_cast<uint64_t>(st.st_mtim.tv_sec));
    w.u64(static_cast<uint64_t>(st.st_mtim.tv_nsec));
    w.u64(static_cast<uint64_t>(st.st_ctim.tv_sec));
    w.u64(static_cast<uint64_t>(st.st_ctim.tv_nsec));
    for (int i = 0; i < 4; ++i) w.u64(0);  // btime sec/nsec, gen, data_version
    return {};
}

ErrnoResult<void> P9Server::op_setattr(Reader& r, Writer&) {
    uint32_t fid = r.u32();
    SetattrReq q{};
    q.valid = r.u32();
    q.mode = r.u32();
    q.uid = r.u32();
    q.gid = r.u32();
    q.size = r.u64();
    q.atime_sec = r.u64();
    q.atime_nsec = r.u64();
    q.mtime_sec = r.u64();
    q.mtime_nsec = r.u64();
    P9_CHECK_READER(r);
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    const uint32_t valid = q.valid;
    if (valid != 0) KS_TRY(root_.check_writable());
    const int pfd = v.path->get();
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(pfd));

    if (valid & kSetattrMode) KS_TRY(root_.chmod(pfd, st, q.mode));
    if (valid & (kSetattrUid | kSetattrGid)) {
        // Only what the host lets us do; EPERM passes through to the guest.
        uid_t u = (valid & kSetattrUid) ? q.uid : static_cast<uid_t>(-1);
        gid_t g = (valid & kSetattrGid) ? q.gid : static_cast<gid_t>(-1);
        if (fchownat(pfd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return errno_fail();
    }
    if (valid & kSetattrSize) {
        if (q.size > static_cast<uint64_t>(INT64_MAX)) return std::unexpected(EINVAL);
        if (S_ISDIR(st.st_mode)) return std::unexpected(EISDIR);
        if (!S_ISREG(st.st_mode)) return std::unexpected(EINVAL);
        SharedFd file = v.open;
        if (!file || (v.open_flags & O_ACCMODE) == O_RDONLY) {
            KS_TRY_ASSIGN(UniqueFd opened, root_.reopen(pfd, O_WRONLY));
            file = share(std::move(opened));
        }
        if (ftruncate(file->get(), static_cast<off_t>(q.size)) < 0) return errno_fail();
    }
    if (valid & (kSetattrAtime | kSetattrMtime)) KS_TRY(set_times(pfd, S_ISLNK(st.st_mode), q));
    // kSetattrCtime alone: any change above already updated ctime.
    return {};
}

ErrnoResult<void> P9Server::op_readlink(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    P9_CHECK_READER(r);
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(v.path->get()));
    if (!S_ISLNK(st.st_mode)) return std::unexpected(EINVAL);
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
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
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
    KS_TRY_ASSIGN(const FidPtr f, get_fid(fid));
    const FidView v = view(*f);
    KS_TRY(check_path(v));
    SharedFd file = v.open;
    if (!file) {
        KS_TRY_ASSIGN(UniqueFd opened, root_.reopen(v.path->get(), O_RDONLY));
        file = share(std::move(opened));
    }
    if ((datasync ? fdatasync(file->get()) : fsync(file->get())) < 0) return errno_fail();
    return {};
}

}  // namespace kvmsandbox::p9
