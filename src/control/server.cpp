#include "control/server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>

#include "base/log.h"
#include "control/frame.h"
#include "control/protocol.h"

namespace kvmsandbox::control {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 64 * 1024;
// Unsent reply bytes above which a connection's requests are no longer
// processed (nor read) until the client reads: a client that only writes
// cannot grow our memory. One maximal reply can still be added on top.
constexpr size_t kOutHighWater = 256 * 1024;
// Reads plus requests handled per wakeup, so one busy client cannot starve
// the devices sharing the loop; the rest continues on a posted pump.
constexpr int kPumpBudget = 64;
constexpr int kListenBacklog = 16;
constexpr int kAcceptsPerWakeup = 16;

// One frame straight onto a socket we are about to close: best effort,
// nonblocking, for refusals at accept time.
void send_refusal(int fd, std::string_view message) {
    auto frame = encode_frame(dump_json(error_response(message)));
    if (!frame) return;
    [[maybe_unused]] auto n = ::send(fd, frame->data(), frame->size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

}  // namespace

namespace detail {

struct ControlConnection {
    ControlServer* server = nullptr;
    UniqueFd fd;
    uid_t uid = 0;
    pid_t pid = 0;
    FrameDecoder in;
    std::string out;
    size_t out_off = 0;
    // Request whose reply was deferred (0: none). Reading and processing
    // stop until it is answered, so replies stay in request order.
    uint64_t pending_id = 0;
    // No more requests: close once `out` is flushed.
    bool closing = false;
    bool closed = false;
    bool in_pump = false;
    uint32_t interest = EPOLLIN;
    Clock::time_point last_active = Clock::now();

    size_t unsent() const { return out.size() - out_off; }
    bool wants_input() const { return !closing && pending_id == 0 && unsent() < kOutHighWater; }
};

}  // namespace detail

DeferredReply::DeferredReply(DeferredReply&& o) noexcept
    : conn_(std::move(o.conn_)), id_(std::exchange(o.id_, 0)) {}

DeferredReply& DeferredReply::operator=(DeferredReply&& o) noexcept {
    if (this != &o) {
        if (pending()) send(error_response("request abandoned"));
        conn_ = std::move(o.conn_);
        id_ = std::exchange(o.id_, 0);
    }
    return *this;
}

DeferredReply::~DeferredReply() {
    if (pending()) send(error_response("request abandoned"));
}

bool DeferredReply::pending() const {
    auto c = conn_.lock();
    return c && id_ != 0 && !c->closed && c->pending_id == id_;
}

void DeferredReply::send(Json reply) {
    auto c = conn_.lock();
    uint64_t id = std::exchange(id_, 0);
    conn_.reset();
    if (!c || c->closed || id == 0 || c->pending_id != id) return;
    c->server->finish_deferred(c, id, std::move(reply));
}

DeferredReply RequestContext::defer() {
    deferred_ = true;
    conn_->pending_id = id_;
    return DeferredReply(conn_, id_);
}

Result<std::unique_ptr<ControlServer>> ControlServer::create(EventLoop& loop,
                                                             std::string socket_path,
                                                             SimpleHandler handler,
                                                             ControlServerOptions options) {
    Handler full = [h = std::move(handler)](const Json& request,
                                            RequestContext&) -> std::optional<Json> {
        return h(request);
    };
    return create(loop, std::move(socket_path), std::move(full), options);
}

Result<std::unique_ptr<ControlServer>> ControlServer::create(EventLoop& loop,
                                                             std::string socket_path,
                                                             Handler handler,
                                                             ControlServerOptions options) {
    sockaddr_un addr{};
    if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path))
        return failf("socket path {} is too long for a unix socket (at most {} bytes)", socket_path,
                     sizeof(addr.sun_path) - 1);
    addr.sun_family = AF_UNIX;
    socket_path.copy(addr.sun_path, socket_path.size());

    std::unique_ptr<ControlServer> s(
        new ControlServer(loop, std::move(socket_path), std::move(handler), options));
    s->read_buf_.resize(kReadChunk);
    s->listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s->listen_fd_) return fail_errno("socket(AF_UNIX)");
    // Never replace an existing file: it may be another instance's socket.
    if (::bind(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        if (errno == EADDRINUSE) return failf("cannot listen on {}: it already exists", s->path_);
        return fail_errno(fmt::format("cannot bind {}", s->path_));
    }
    struct stat st {};
    if (::lstat(s->path_.c_str(), &st) != 0) return fail_errno(fmt::format("stat {}", s->path_));
    // From here on the destructor removes the socket file if anything fails.
    s->bound_ = true;
    s->dev_ = st.st_dev;
    s->ino_ = st.st_ino;
    // The directory is private already; this also holds if it is not.
    if (::chmod(s->path_.c_str(), 0600) != 0) return fail_errno(fmt::format("chmod {}", s->path_));
    if (::listen(s->listen_fd_.get(), kListenBacklog) != 0)
        return fail_errno(fmt::format("cannot listen on {}", s->path_));

    s->timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!s->timer_fd_) return fail_errno("timerfd_create");

    ControlServer* raw = s.get();
    if (auto r =
            loop.add(raw->listen_fd_.get(), EPOLLIN, [raw](uint32_t) { raw->on_listen_ready(); });
        !r)
        return std::unexpected(r.error());
    if (auto r = loop.add(raw->timer_fd_.get(), EPOLLIN, [raw](uint32_t) { raw->on_timer(); }); !r)
        return std::unexpected(r.error());
    return s;
}

ControlServer::~ControlServer() {
    for (auto& [fd, c] : conns_) {
        c->closed = true;
        loop_.remove(fd);
    }
    conns_.clear();
    if (listen_fd_) loop_.remove(listen_fd_.get());
    if (timer_fd_) loop_.remove(timer_fd_.get());
    if (bound_) {
        // Someone may have replaced the path since (a new instance of the
        // same name after ours was declared dead): leave theirs alone.
        struct stat st {};
        if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
            ::unlink(path_.c_str());
    }
}

void ControlServer::on_listen_ready() {
    for (int i = 0; i < kAcceptsPerWakeup; ++i) {
        UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN) return;
            // Out of descriptors (EMFILE...): the listening socket stays
            // readable, so stop watching it until a connection goes away or
            // the timer ticks, rather than spinning.
            log::error("control socket {}: accept: {}", path_, std::strerror(errno));
            if (loop_.modify(listen_fd_.get(), 0)) accept_paused_ = true;
            update_timer();
            return;
        }
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) continue;
        if (cred.uid != options_.allowed_uid) {
            send_refusal(fd.get(), fmt::format("permission denied: uid {} may not control this "
                                               "instance",
                                               cred.uid));
            continue;
        }
        if (conns_.size() >= options_.max_clients) {
            send_refusal(fd.get(), "too many clients, try again later");
            continue;
        }
        auto c = std::make_shared<Conn>();
        c->server = this;
        c->uid = cred.uid;
        c->pid = cred.pid;
        int raw = fd.get();
        c->fd = std::move(fd);
        if (!loop_.add(raw, EPOLLIN, [this, raw](uint32_t ev) { on_conn_event(raw, ev); }))
            continue;
        conns_[raw] = std::move(c);
        update_timer();
    }
}

void ControlServer::on_conn_event(int fd, uint32_t events) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    auto c = it->second;
    if (events & EPOLLERR) {
        close_conn(c);
        return;
    }
    // A hangup while we are not reading (waiting for a deferred reply, or for
    // the client to read its replies) leaves nobody to answer: EPOLLHUP is
    // reported regardless of interest, so waiting would spin.
    if ((events & EPOLLHUP) && !(c->interest & EPOLLIN)) {
        close_conn(c);
        return;
    }
    if (!flush(c)) return;
    pump(c);
}

void ControlServer::pump(const std::shared_ptr<Conn>& c) {
    if (c->closed || c->in_pump) return;
    c->in_pump = true;
    int budget = kPumpBudget;
    bool eof = false;
    while (!c->closed && c->wants_input() && budget > 0) {
        --budget;
        if (auto frame = c->in.next()) {
            handle_frame(c, *frame);
            continue;
        }
        if (c->in.bad()) {
            // No way to find the next frame boundary: answer and hang up.
            queue_reply(*c, error_response(c->in.error()));
            c->closing = true;
            break;
        }
        ssize_t n = ::recv(c->fd.get(), read_buf_.data(), read_buf_.size(), MSG_DONTWAIT);
        if (n > 0) {
            c->in.feed(std::string_view(read_buf_.data(), static_cast<size_t>(n)));
            c->last_active = Clock::now();
            continue;
        }
        if (n == 0) {
            // The client may have shut down only its sending side: replies
            // already queued still go out before we close.
            eof = true;
            c->closing = true;
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        close_conn(c);
        break;
    }
    c->in_pump = false;
    if (c->closed) return;
    if (!flush(c)) return;
    if (c->closing && c->unsent() == 0) {
        close_conn(c);
        return;
    }
    if (budget == 0 && !eof && c->wants_input()) schedule_pump(c);
    update_interest(c);
}

void ControlServer::schedule_pump(const std::shared_ptr<Conn>& c) {
    // By weak reference and through the connection: the server may be gone
    // by the time this runs (its destructor marks every connection closed).
    loop_.post([w = std::weak_ptr<Conn>(c)] {
        if (auto c = w.lock(); c && !c->closed) c->server->pump(c);
    });
}

void ControlServer::handle_frame(const std::shared_ptr<Conn>& c, const std::string& payload) {
    c->last_active = Clock::now();
    auto request = parse_json(payload, kMaxFrame);
    if (!request) {
        queue_reply(*c,
                    error_response(fmt::format("invalid request: {}", request.error().message)));
        return;
    }
    auto cmd = validate_request(*request);
    if (!cmd) {
        queue_reply(*c, error_response(cmd.error().message));
        return;
    }
    RequestContext ctx(c, next_request_id_++, c->uid, c->pid);
    std::optional<Json> reply = handler_(*request, ctx);
    if (c->closed) return;
    if (reply) {
        // A reply returned now wins over a defer() made during the call; the
        // DeferredReply becomes inert.
        if (c->pending_id == ctx.id_) c->pending_id = 0;
        queue_reply(*c, *reply);
    } else if (!ctx.deferred_) {
        queue_reply(*c, error_response(fmt::format("internal error: no reply to '{}'", *cmd)));
    }
}

void ControlServer::queue_reply(Conn& c, const Json& reply) {
    std::string text = dump_json(reply);
    auto frame = encode_frame(text);
    if (!frame)
        frame = encode_frame(
            dump_json(error_response(fmt::format("reply too large ({} bytes)", text.size()))));
    if (c.out_off > 0 && c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
    }
    c.out += *frame;
}

bool ControlServer::flush(const std::shared_ptr<Conn>& conn) {
    Conn& c = *conn;
    while (c.unsent() > 0) {
        ssize_t n =
            ::send(c.fd.get(), c.out.data() + c.out_off, c.unsent(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c.out_off += static_cast<size_t>(n);
            c.last_active = Clock::now();
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        // EPIPE, ECONNRESET: the client is gone.
        close_conn(conn);
        return false;
    }
    if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
    } else if (c.out_off >= kReadChunk) {
        c.out.erase(0, c.out_off);
        c.out_off = 0;
    }
    return true;
}

void ControlServer::update_interest(const std::shared_ptr<Conn>& conn) {
    Conn& c = *conn;
    uint32_t want = 0;
    if (c.wants_input()) want |= EPOLLIN;
    if (c.unsent() > 0) want |= EPOLLOUT;
    if (want == c.interest) return;
    if (!loop_.modify(c.fd.get(), want)) {
        close_conn(conn);
        return;
    }
    c.interest = want;
}

void ControlServer::close_conn(const std::shared_ptr<Conn>& c) {
    if (c->closed) return;
    c->closed = true;
    int fd = c->fd.get();
    loop_.remove(fd);
    // Keep the descriptor open until the current batch of epoll events is
    // done: a new connection reusing the number could otherwise receive an
    // event meant for this one.
    loop_.post([keep = c] {});
    conns_.erase(fd);
    if (accept_paused_ && loop_.modify(listen_fd_.get(), EPOLLIN)) accept_paused_ = false;
    update_timer();
}

void ControlServer::finish_deferred(const std::shared_ptr<Conn>& c, uint64_t id, Json reply) {
    if (c->closed || c->pending_id != id) return;
    c->pending_id = 0;
    queue_reply(*c, reply);
    // Not pumped here: send() may be called from inside a handler (of this
    // or another connection), which must not run handlers re-entrantly.
    schedule_pump(c);
}

void ControlServer::on_timer() {
    uint64_t ticks;
    [[maybe_unused]] auto r = ::read(timer_fd_.get(), &ticks, sizeof(ticks));
    if (accept_paused_ && loop_.modify(listen_fd_.get(), EPOLLIN)) accept_paused_ = false;
    if (options_.idle_timeout.count() > 0) {
        auto now = Clock::now();
        std::vector<std::shared_ptr<Conn>> idle;
        for (auto& [fd, c] : conns_)
            if (c->pending_id == 0 && now - c->last_active >= options_.idle_timeout)
                idle.push_back(c);
        for (auto& c : idle) close_conn(c);
    }
    update_timer();
}

void ControlServer::update_timer() {
    bool want = (!conns_.empty() && options_.idle_timeout.count() > 0) || accept_paused_;
    if (want == timer_armed_) return;
    itimerspec its{};
    if (want) {
        auto period = std::max(options_.idle_timeout / 2, std::chrono::milliseconds(10));
        if (options_.idle_timeout.count() == 0) period = std::chrono::milliseconds(1000);
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(period);
        its.it_interval.tv_sec = secs.count();
        its.it_interval.tv_nsec =
            std::chrono::duration_cast<std::chrono::nanoseconds>(period - secs).count();
        its.it_value = its.it_interval;
    }
    if (::timerfd_settime(timer_fd_.get(), 0, &its, nullptr) == 0) timer_armed_ = want;
}

}  // namespace kvmsandbox::control
