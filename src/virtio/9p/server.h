// A 9P2000.L file server confined to one host directory (the share root).
//
// Everything in a request is hostile (docs/architecture.md §5). Confinement is the
// share core's (shares/confined_root.h); it rests on file descriptors, never
// on path strings:
//  - every fid holds an O_PATH descriptor of its object; walk resolves one
//    component at a time with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//    RESOLVE_NO_MAGICLINKS) relative to the previous descriptor, and with
//    O_NOFOLLOW, so a walk onto a symlink yields the symlink itself and a walk
//    through it fails (symlinks are resolved by the guest, never by us);
//  - ".." at the share root stays at the root; ".." elsewhere is checked to
//    still lie beneath the root (a directory moved out by the host is refused);
//  - lopen reopens the very inode the O_PATH fd holds through
//    /proc/self/fd/N, after checking it is a regular file or a directory (a
//    symlink, device, fifo or socket is never opened on the host);
//  - names for create/link/rename/unlink are single components: "", ".",
//    "..", anything with '/' or NUL is EINVAL;
//  - Tattach's aname is ignored for resolution: whatever the guest names
//    ("", "/", the share name, "/etc", "../"), the fid is the share root.
//
// Policy beyond the protocol:
//  - read-only shares answer EROFS to every mutating request;
//  - created files and chmod drop S_ISUID, and S_ISGID on non-directories, so
//    the guest cannot plant set-id programs owned by the caller on the host;
//  - files are created with the server's credentials (the gid field of
//    create requests is ignored) and the exact mode asked for (our umask is
//    undone), so they belong to the caller on the host;
//  - mknod makes regular files, fifos and sockets only; device nodes: EPERM;
//  - xattrs: "user.*" can be read and written, "system.posix_acl_*" read
//    only, others are EOPNOTSUPP; symlinks have no xattrs here (empty list);
//    an xattrcreate of size 0 removes the attribute (as QEMU's server does);
//  - qid paths are chosen so that the Linux client shows the host's st_ino
//    (server_internal.h, qid_path); Rgetattr's nlink, blocks and the times
//    with their nanoseconds are the host's;
//  - locks are OFD locks taken without blocking; a conflict answers
//    Rlock(BLOCKED) and the Linux client retries.
//
// The implementation is split by concern: server.cpp (framing, dispatch
// table, session, fid table), server_walk.cpp, server_io.cpp, server_dir.cpp,
// server_meta.cpp, server_xattr_lock.cpp.
//
// Thread safety: handle() may run concurrently on several threads (different
// tags). The fid table has one mutex held only for lookups and updates; a
// request keeps its fid alive with a shared_ptr, so file I/O runs without the
// table lock and a concurrent clunk cannot close a descriptor in use.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "shares/confined_root.h"
#include "virtio/9p/wire.h"

namespace kvmsandbox::p9 {

struct Fid;

class P9Server {
  public:
    struct Options {
        // Open fids at once; more: EMFILE. Each may hold up to 3 host fds, so
        // the process' RLIMIT_NOFILE should allow for it.
        uint32_t max_fids = 4096;
        // Upper bound of the negotiated msize (the client's offer is lowered to it).
        uint32_t max_msize = 1024 * 1024;
        // The name this share is known by; Tattach accepts it, "" or "/", and
        // every other aname resolves to the share root as well.
        std::string share_name;
        // Bytes of xattr values held by open xattr fids, all fids together
        // (each value is at most 64 KiB); more: ENOMEM.
        size_t max_xattr_bytes = size_t{4} * 1024 * 1024;
        // Paths relative to the root that the guest must not see (secrets in
        // a shared /etc). They are hidden by identity (device and inode), so
        // a hard link or a rename inside the share does not reveal them: walk
        // answers ENOENT and readdir leaves them out.
        std::vector<std::string> hidden;
        // The host's system directories: show only what an unprivileged host
        // user could reach and read (others' r on an entry, others' x on each
        // directory walked through; see shares/confined_root.h), so a root-only
        // file such as a 0600 /etc/wireguard/wg0.conf is absent even when we
        // run as root. Invisible entries: walk answers ENOENT, readdir omits
        // them (at one fstatat per entry).
        bool world_readable_only = false;
    };

    // The guest's scatter/gather buffers, in order. The request segments are
    // only read; the response segments only written.
    using IoVecs = std::span<const std::span<uint8_t>>;

    // root_dir: a directory fd (O_PATH is fine). Prefer create(), which checks
    // the root and /proc; a server built on a bad root answers every request
    // with an error.
    P9Server(UniqueFd root_dir, bool read_only, Options options);
    P9Server(UniqueFd root_dir, bool read_only)
        : P9Server(std::move(root_dir), read_only, Options{}) {}
    ~P9Server();
    P9Server(const P9Server&) = delete;
    P9Server& operator=(const P9Server&) = delete;

    static Result<std::unique_ptr<P9Server>> create(UniqueFd root_dir, bool read_only,
                                                    Options options);

    // Handles one request and writes the reply (Rlerror on any error) into
    // response. Returns the reply's length, never more than response.size();
    // 0 only when response cannot hold even an Rlerror (11 bytes).
    size_t handle(std::span<const uint8_t> request, std::span<uint8_t> response);

    // Zero-copy form: Tread reads the file straight into the response segments
    // after the 11-byte Rread header, Twrite writes from the request segments
    // after its 23-byte header. Other (small) requests are first copied into a
    // private buffer, so a guest changing its buffer meanwhile cannot make a
    // field change between validation and use.
    size_t handle(const IoVecs& request, const IoVecs& response);

    uint32_t msize() const { return msize_.load(); }
    size_t fid_count() const;
    bool read_only() const { return root_.read_only(); }

  private:
    using FidPtr = std::shared_ptr<Fid>;
    using Handler = ErrnoResult<void> (P9Server::*)(Reader& r, Writer& w);

    // The handler of a T-message type, null for types we do not serve.
    static Handler handler(uint8_t type);
    size_t dispatch(const Header& h, std::span<const uint8_t> body, std::span<uint8_t> out);
    // server_io.cpp: Tread and Twrite, zero copy.
    size_t do_read(const Header& h, std::span<const uint8_t> head, const IoVecs& response,
                   size_t cap);
    size_t do_write(const Header& h, std::span<const uint8_t> head, const IoVecs& request,
                    const IoVecs& response);

    // server.cpp: session and fid lifetime.
    ErrnoResult<void> op_version(Reader& r, Writer& w);
    ErrnoResult<void> op_auth(Reader& r, Writer& w);
    ErrnoResult<void> op_attach(Reader& r, Writer& w);
    ErrnoResult<void> op_flush(Reader& r, Writer& w);
    ErrnoResult<void> op_clunk(Reader& r, Writer& w);
    // server_walk.cpp: walk, open, create.
    ErrnoResult<void> op_walk(Reader& r, Writer& w);
    ErrnoResult<void> op_lopen(Reader& r, Writer& w);
    ErrnoResult<void> op_lcreate(Reader& r, Writer& w);
    // server_dir.cpp: directory entries.
    ErrnoResult<void> op_readdir(Reader& r, Writer& w);
    ErrnoResult<void> op_mkdir(Reader& r, Writer& w);
    ErrnoResult<void> op_symlink(Reader& r, Writer& w);
    ErrnoResult<void> op_mknod(Reader& r, Writer& w);
    ErrnoResult<void> op_link(Reader& r, Writer& w);
    ErrnoResult<void> op_rename(Reader& r, Writer& w);
    ErrnoResult<void> op_renameat(Reader& r, Writer& w);
    ErrnoResult<void> op_unlinkat(Reader& r, Writer& w);
    ErrnoResult<void> op_remove(Reader& r, Writer& w);
    // server_meta.cpp: attributes and the file system.
    ErrnoResult<void> op_getattr(Reader& r, Writer& w);
    ErrnoResult<void> op_setattr(Reader& r, Writer& w);
    ErrnoResult<void> op_readlink(Reader& r, Writer& w);
    ErrnoResult<void> op_statfs(Reader& r, Writer& w);
    ErrnoResult<void> op_fsync(Reader& r, Writer& w);
    // server_xattr_lock.cpp: extended attributes and locks.
    ErrnoResult<void> op_lock(Reader& r, Writer& w);
    ErrnoResult<void> op_getlock(Reader& r, Writer& w);
    ErrnoResult<void> op_xattrwalk(Reader& r, Writer& w);
    ErrnoResult<void> op_xattrcreate(Reader& r, Writer& w);
    ErrnoResult<void> apply_xattr(Fid& f);

    // server_internal.h: the qid of a host object, whose path is the guest's
    // inode number. Members of P9Server call this; free helpers take the
    // root device themselves.
    Qid make_qid(const struct stat& st) const;

    ErrnoResult<FidPtr> get_fid(uint32_t id) const;
    ErrnoResult<void> add_fid(uint32_t id, FidPtr fid, bool replace);
    FidPtr take_fid(uint32_t id);

    // Declared before options_: built from the constructor's arguments.
    shares::ConfinedRoot root_;
    dev_t root_dev_ = 0;  // the share root's device, for qids (0: bad root)
    Options options_;
    std::atomic<uint32_t> msize_{0};
    std::atomic<bool> negotiated_{false};
    std::shared_ptr<std::atomic<size_t>> xattr_bytes_ = std::make_shared<std::atomic<size_t>>(0);

    mutable std::mutex table_mu_;
    std::unordered_map<uint32_t, FidPtr> fids_;
};

}  // namespace kvmsandbox::p9
