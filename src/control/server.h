// The control socket of a running instance: a unix stream socket served from
// the VM's EventLoop, speaking control/protocol.h over control/frame.h.
//
// Peers are other processes, so everything they send is hostile input:
// SO_PEERCRED must show the allowed uid (others get one error reply and are
// closed), frames and JSON are bounded, at most max_clients connections are
// served, each buffers a bounded number of bytes (a client that does not read
// its replies stops being read), and connections idle for idle_timeout are
// closed. Requests on one connection are answered in order, one at a time.
//
// Threading: create(), the destructor, the handler and DeferredReply all run
// on the loop thread (or while the loop is not running). Other threads reach
// a DeferredReply through EventLoop::post().
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/event_loop.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "control/json.h"

namespace kvmsandbox::control {

struct ControlServerOptions {
    uid_t allowed_uid = ::getuid();
    size_t max_clients = 16;
    // Zero: never close idle connections.
    std::chrono::milliseconds idle_timeout{30'000};
};

class ControlServer;
namespace detail {
struct ControlConnection;
}

// The right to answer one request later. send() on the loop thread; it does
// nothing if the client has gone or the reply was already sent. Destroying
// an unsent one answers "request abandoned", so a client never waits for a
// reply that cannot come.
class DeferredReply {
  public:
    DeferredReply() = default;
    DeferredReply(DeferredReply&& o) noexcept;
    DeferredReply& operator=(DeferredReply&& o) noexcept;
    ~DeferredReply();

    void send(Json reply);
    // True while the client still waits for this reply.
    bool pending() const;

  private:
    friend class RequestContext;
    DeferredReply(std::weak_ptr<detail::ControlConnection> conn, uint64_t id)
        : conn_(std::move(conn)), id_(id) {}

    std::weak_ptr<detail::ControlConnection> conn_;
    uint64_t id_ = 0;
};

// What a handler knows about the request beyond its JSON. Valid only during
// the handler call.
class RequestContext {
  public:
    RequestContext(const RequestContext&) = delete;
    RequestContext& operator=(const RequestContext&) = delete;

    uid_t peer_uid() const { return uid_; }
    pid_t peer_pid() const { return pid_; }
    // Takes over the reply: the handler then returns std::nullopt and calls
    // send() on the result later (e.g. "stop" answers once the VM is down).
    // Further requests on this connection wait until then. Call it at most
    // once per request.
    DeferredReply defer();

  private:
    friend class ControlServer;
    RequestContext(std::shared_ptr<detail::ControlConnection> conn, uint64_t id, uid_t uid,
                   pid_t pid)
        : conn_(std::move(conn)), id_(id), uid_(uid), pid_(pid) {}

    std::shared_ptr<detail::ControlConnection> conn_;
    uint64_t id_;
    uid_t uid_;
    pid_t pid_;
    bool deferred_ = false;
};

class ControlServer {
  public:
    // Gets a request that passed validate_request() (version and "cmd" are
    // checked). Returns the reply (ok_response()/error_response()), or
    // std::nullopt after ctx.defer(). Must not destroy the server.
    using Handler = std::function<std::optional<Json>(const Json& request, RequestContext& ctx)>;
    using SimpleHandler = std::function<Json(const Json& request)>;

    // Binds `socket_path`, which must not exist (stale sockets are removed
    // under the instance lock by claim_instance(), never here), and starts
    // serving on `loop`.
    static Result<std::unique_ptr<ControlServer>> create(EventLoop& loop, std::string socket_path,
                                                         Handler handler,
                                                         ControlServerOptions options = {});
    static Result<std::unique_ptr<ControlServer>> create(EventLoop& loop, std::string socket_path,
                                                         SimpleHandler handler,
                                                         ControlServerOptions options = {});

    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;
    // Closes every connection and removes the socket file if it is still the
    // one we bound (same inode).
    ~ControlServer();

    const std::string& socket_path() const { return path_; }
    size_t client_count() const { return conns_.size(); }

  private:
    friend class DeferredReply;
    using Conn = detail::ControlConnection;

    ControlServer(EventLoop& loop, std::string path, Handler handler, ControlServerOptions options)
        : loop_(loop), path_(std::move(path)), handler_(std::move(handler)), options_(options) {}

    void on_listen_ready();
    void on_conn_event(int fd, uint32_t events);
    void on_timer();
    void pump(const std::shared_ptr<Conn>& c);
    void schedule_pump(const std::shared_ptr<Conn>& c);
    void handle_frame(const std::shared_ptr<Conn>& c, const std::string& payload);
    void queue_reply(Conn& c, const Json& reply);
    // False when the connection was closed.
    bool flush(const std::shared_ptr<Conn>& c);
    void update_interest(const std::shared_ptr<Conn>& c);
    void close_conn(const std::shared_ptr<Conn>& c);
    void finish_deferred(const std::shared_ptr<Conn>& c, uint64_t id, Json reply);
    void update_timer();

    EventLoop& loop_;
    std::string path_;
    Handler handler_;
    ControlServerOptions options_;
    UniqueFd listen_fd_;
    UniqueFd timer_fd_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    bool bound_ = false;
    bool accept_paused_ = false;
    bool timer_armed_ = false;
    uint64_t next_request_id_ = 1;
    std::unordered_map<int, std::shared_ptr<Conn>> conns_;
    std::vector<char> read_buf_;
};

}  // namespace kvmsandbox::control
