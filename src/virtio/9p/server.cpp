// P9Server's core: request framing (both the contiguous and the
// scatter/gather form), dispatch through a table of handlers, the session
// (Tversion, Tattach, Tflush, Tclunk) and the fid table. Every byte of a
// request is hostile; see server.h for the confinement and policy rules.
#include "virtio/9p/server.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "virtio/9p/server_internal.h"

namespace kvmsandbox::p9 {

P9Server::P9Server(UniqueFd root_dir, bool read_only, Options options)
    : root_(std::move(root_dir), read_only, options.hidden, options.world_readable_only),
      options_(std::move(options)) {
    options_.max_msize = std::max(options_.max_msize, kMinMsize);
    msize_ = options_.max_msize;
    if (root_.valid()) {
        if (auto st = shares::stat_fd(root_.root()->get())) root_dev_ = st->st_dev;
    }
}

P9Server::~P9Server() = default;

Result<std::unique_ptr<P9Server>> P9Server::create(UniqueFd root_dir, bool read_only,
                                                   Options options) {
    if (!root_dir) return fail("9p: no share root directory");
    auto st = shares::stat_fd(root_dir.get());
    if (!st) return failf("9p: share root: {}", std::strerror(st.error()));
    if (!S_ISDIR(st->st_mode)) return fail("9p: share root is not a directory");
    auto server = std::make_unique<P9Server>(std::move(root_dir), read_only, std::move(options));
    if (!server->root_.can_reopen())
        return fail("9p: /proc/self/fd is not available (procfs needed)");
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

P9Server::Handler P9Server::handler(uint8_t type) {
    // Tread and Twrite never get here: handle() serves them zero-copy.
    static constexpr auto kTable = [] {
        std::array<Handler, 256> t{};
        t[kTversion] = &P9Server::op_version;
        t[kTauth] = &P9Server::op_auth;
        t[kTattach] = &P9Server::op_attach;
        t[kTflush] = &P9Server::op_flush;
        t[kTwalk] = &P9Server::op_walk;
        t[kTlopen] = &P9Server::op_lopen;
        t[kTlcreate] = &P9Server::op_lcreate;
        t[kTclunk] = &P9Server::op_clunk;
        t[kTremove] = &P9Server::op_remove;
        t[kTgetattr] = &P9Server::op_getattr;
        t[kTsetattr] = &P9Server::op_setattr;
        t[kTreaddir] = &P9Server::op_readdir;
        t[kTmkdir] = &P9Server::op_mkdir;
        t[kTsymlink] = &P9Server::op_symlink;
        t[kTmknod] = &P9Server::op_mknod;
        t[kTlink] = &P9Server::op_link;
        t[kTrename] = &P9Server::op_rename;
        t[kTrenameat] = &P9Server::op_renameat;
        t[kTunlinkat] = &P9Server::op_unlinkat;
        t[kTreadlink] = &P9Server::op_readlink;
        t[kTstatfs] = &P9Server::op_statfs;
        t[kTfsync] = &P9Server::op_fsync;
        t[kTlock] = &P9Server::op_lock;
        t[kTgetlock] = &P9Server::op_getlock;
        t[kTxattrwalk] = &P9Server::op_xattrwalk;
        t[kTxattrcreate] = &P9Server::op_xattrcreate;
        return t;
    }();
    return kTable[type];
}

size_t P9Server::dispatch(const Header& h, std::span<const uint8_t> body, std::span<uint8_t> out) {
    Reader r(body);
    Writer w(out);
    w.begin(static_cast<uint8_t>(h.type + 1), h.tag);

    ErrnoResult<void> res;
    const Handler op = handler(h.type);
    if (!negotiated_ && h.type != kTversion) {
        res = std::unexpected(EPROTO);  // nothing before Tversion
    } else if (!root_.valid() && h.type != kTversion) {
        res = std::unexpected(EBADF);  // built on a bad root: nothing to serve
    } else if (op == nullptr) {
        res = std::unexpected(EOPNOTSUPP);
    } else {
        res = (this->*op)(r, w);
    }
    if (!res) return write_error(out, h.tag, res.error());
    size_t n = w.finish();
    // The reply did not fit the guest's buffer (or msize).
    if (n == 0) return write_error(out, h.tag, EMSGSIZE);
    return n;
}

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

ErrnoResult<void> P9Server::op_auth(Reader&, Writer&) {
    return std::unexpected(EOPNOTSUPP);  // no authentication: Tattach takes afid NOFID
}

ErrnoResult<void> P9Server::op_attach(Reader& r, Writer& w) {
    uint32_t fid = r.u32();
    uint32_t afid = r.u32();
    r.str(kMaxPathLen);  // uname: the guest's claim; we act with our own credentials
    r.str(kMaxPathLen);  // aname: see the header; always the share root
    r.u32();             // n_uname
    P9_CHECK_READER(r);
    if (afid != kNoFid) return std::unexpected(EINVAL);  // Tauth never succeeds
    KS_TRY_ASSIGN(const struct stat st, shares::stat_fd(root_.root()->get()));
    auto f = std::make_shared<Fid>();
    f->path = root_.root();
    KS_TRY(add_fid(fid, std::move(f), false));
    w.qid(make_qid(st));
    return {};
}

ErrnoResult<void> P9Server::op_flush(Reader& r, Writer&) {
    // Requests never block for long here, so there is nothing to cancel: the
    // old request has been or will be answered.
    r.u16();  // oldtag
    P9_CHECK_READER(r);
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

}  // namespace kvmsandbox::p9
