#include "control/server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "control/client.h"
#include "control/frame.h"
#include "control/protocol.h"

namespace kvmsandbox::control {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kTimeout = 5s;

UniqueFd connect_to(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << std::strerror(errno);
    return fd;
}

void send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        ASSERT_GT(n, 0) << std::strerror(errno);
        bytes.remove_prefix(static_cast<size_t>(n));
    }
}

// The next frame from a raw connection, or nullopt at EOF/reset. Fails the
// test on timeout rather than hanging.
std::optional<Json> read_reply(int fd, FrameDecoder& d) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    for (;;) {
        if (auto f = d.next()) {
            auto j = parse_json(*f, kMaxFrame);
            EXPECT_TRUE(j);
            return j ? *j : Json();
        }
        pollfd p{fd, POLLIN, 0};
        int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
        if (ms <= 0 || ::poll(&p, 1, ms) != 1) {
            ADD_FAILURE() << "no reply in time";
            return std::nullopt;
        }
        char buf[4096];
        ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) return std::nullopt;
        d.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
}

// True once the peer closed the connection (EOF or reset), false on timeout.
bool wait_closed(int fd) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        char buf[4096];
        ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) return true;
    }
    return false;
}

class ControlServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kvmsb-srv-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/web.sock";
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop);
        loop_ = std::move(*loop);
    }

    void TearDown() override {
        stop();
        servers_.clear();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // The handler of most tests; runs on the loop thread.
    std::optional<Json> handle(const Json& req, RequestContext& ctx) {
        handler_thread_ = std::this_thread::get_id();
        peer_pid_ = ctx.peer_pid();
        std::string cmd = *get_string(req, "cmd");
        if (cmd == "echo") {
            const Json* msg = find_member(req, "msg");
            return ok_response(Json::object({{"echo", msg ? *msg : Json()}}));
        }
        if (cmd == "fail") return error_response("it failed\non two lines");
        if (cmd == "silent") return std::nullopt;
        if (cmd == "wait") {
            waiting_ = ctx.defer();
            deferred_.store(true);
            return std::nullopt;
        }
        if (cmd == "release") {
            if (!waiting_.pending()) return error_response("nothing waits");
            waiting_.send(ok_response(Json::object({{"released", true}})));
            return ok_response();
        }
        if (cmd == "abandon") {
            ctx.defer();  // the token dies at once
            return std::nullopt;
        }
        if (cmd == "now") {
            // Deferred and answered within the handler: fine too.
            ctx.defer().send(ok_response(Json::object({{"now", true}})));
            return std::nullopt;
        }
        if (cmd == "big") return ok_response(Json::object({{"blob", std::string(kMaxFrame, 'x')}}));
        return error_response(fmt::format("unknown command '{}'", cmd));
    }

    ControlServer* make_server(ControlServerOptions opts = {}, std::string path = {}) {
        auto s = ControlServer::create(
            *loop_, path.empty() ? path_ : path,
            [this](const Json& req, RequestContext& ctx) { return handle(req, ctx); }, opts);
        EXPECT_TRUE(s) << s.error().message;
        if (!s) return nullptr;
        servers_.push_back(std::move(*s));
        return servers_.back().get();
    }

    // Servers are created before the loop thread starts and destroyed after
    // it stopped: their setup is not thread-safe against a running loop.
    void start() {
        thread_ = std::thread([this] { ASSERT_TRUE(loop_->run()); });
    }
    void stop() {
        if (!thread_.joinable()) return;
        loop_->request_stop();
        thread_.join();
    }

    Result<Json> call(const Json& req, std::chrono::milliseconds timeout = kTimeout) {
        return ControlClient::request(path_, req, timeout);
    }

    std::string dir_;
    std::string path_;
    std::unique_ptr<EventLoop> loop_;
    std::vector<std::unique_ptr<ControlServer>> servers_;
    std::thread thread_;
    // Loop-thread state of handle().
    DeferredReply waiting_;
    std::atomic<bool> deferred_{false};
    std::thread::id handler_thread_;
    pid_t peer_pid_ = 0;
};

TEST_F(ControlServerTest, RoundTripsSeveralRequests) {
    make_server();
    start();
    for (int i = 0; i < 5; ++i) {
        auto r = call(make_request("echo", Json::object({{"msg", i}})));
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(get_bool(*r, "ok"), true);
        EXPECT_EQ(get_int(*r, "v"), 1);
        EXPECT_EQ(get_int(*r, "echo"), i);
    }
    stop();
    EXPECT_NE(handler_thread_, std::this_thread::get_id());
    EXPECT_EQ(peer_pid_, ::getpid());
}

TEST_F(ControlServerTest, HandlerErrorIsAnErrorResponse) {
    make_server();
    start();
    auto r = call(make_request("fail"));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(get_bool(*r, "ok"), false);
    EXPECT_EQ(get_string(*r, "error"), "it failed on two lines");
    auto res = response_result(*r);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().message, "it failed on two lines");
    EXPECT_EQ(res.error().exit_code, 1);

    auto unknown = call(make_request("frobnicate"));
    ASSERT_TRUE(unknown);
    EXPECT_EQ(get_string(*unknown, "error"), "unknown command 'frobnicate'");
    auto silent = call(make_request("silent"));
    ASSERT_TRUE(silent);
    EXPECT_EQ(get_string(*silent, "error"), "internal error: no reply to 'silent'");
}

TEST_F(ControlServerTest, SimpleHandler) {
    auto s = ControlServer::create(*loop_, path_, [](const Json& req) {
        return ok_response(Json::object({{"cmd", *find_member(req, "cmd")}}));
    });
    ASSERT_TRUE(s);
    servers_.push_back(std::move(*s));
    start();
    auto r = call(make_request("hello"));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(dump_json(*r), R"({"v":1,"ok":true,"cmd":"hello"})");
    stop();
}

TEST_F(ControlServerTest, RejectsOtherVersionsAndBadRequests) {
    make_server();
    start();
    auto v2 = call(Json::object({{"v", 2}, {"cmd", "echo"}}));
    ASSERT_TRUE(v2) << v2.error().message;
    EXPECT_EQ(get_string(*v2, "error"), "protocol version 2 not supported");
    auto nov = call(Json::object({{"cmd", "echo"}}));
    ASSERT_TRUE(nov);
    EXPECT_EQ(get_string(*nov, "error"), "request has no protocol version");
    auto nocmd = call(Json::object({{"v", 1}}));
    ASSERT_TRUE(nocmd);
    EXPECT_EQ(get_string(*nocmd, "error"), "request has no command");
    auto notobj = call(Json::array({1}));
    ASSERT_TRUE(notobj);
    EXPECT_EQ(get_string(*notobj, "error"), "request is not a JSON object");
}

TEST_F(ControlServerTest, PipelinedRequestsOnOneConnection) {
    make_server();
    start();
    UniqueFd fd = connect_to(path_);
    // Malformed JSON gets an answer and leaves the connection usable.
    std::string bytes = *encode_frame("{\"v\":1,");
    constexpr int kRequests = 200;  // more than one pump's budget
    for (int i = 0; i < kRequests; ++i)
        bytes += *encode_frame(dump_json(make_request("echo", Json::object({{"msg", i}}))));
    send_all(fd.get(), bytes);
    FrameDecoder d;
    auto bad = read_reply(fd.get(), d);
    ASSERT_TRUE(bad);
    EXPECT_NE(get_string(*bad, "error")->find("invalid request: invalid JSON"), std::string::npos);
    for (int i = 0; i < kRequests; ++i) {
        auto r = read_reply(fd.get(), d);
        ASSERT_TRUE(r);
        ASSERT_EQ(get_int(*r, "echo"), i);
    }
}

TEST_F(ControlServerTest, RefusesOtherUid) {
    ControlServerOptions opts;
    opts.allowed_uid = ::getuid() + 1;
    make_server(opts);
    start();
    auto r = call(make_request("echo", Json::object({{"msg", 1}})));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(get_bool(*r, "ok"), false);
    EXPECT_NE(get_string(*r, "error")->find("permission denied: uid"), std::string::npos);
    UniqueFd fd = connect_to(path_);
    EXPECT_TRUE(wait_closed(fd.get()));
}

TEST_F(ControlServerTest, OversizedFrameClosesConnection) {
    make_server();
    start();
    UniqueFd fd = connect_to(path_);
    uint32_t len = kMaxFrame + 1;
    std::string header = {static_cast<char>(len >> 24), static_cast<char>(len >> 16),
                          static_cast<char>(len >> 8), static_cast<char>(len)};
    send_all(fd.get(), header + "some of the payload");
    FrameDecoder d;
    auto r = read_reply(fd.get(), d);
    ASSERT_TRUE(r);
    EXPECT_NE(get_string(*r, "error")->find("message too large"), std::string::npos);
    EXPECT_TRUE(wait_closed(fd.get()));
    // The server itself carries on.
    EXPECT_TRUE(call(make_request("echo", Json::object({{"msg", 1}}))));
}

TEST_F(ControlServerTest, ZeroLengthFrameClosesConnection) {
    make_server();
    start();
    UniqueFd fd = connect_to(path_);
    send_all(fd.get(), std::string(4, '\0'));
    FrameDecoder d;
    auto r = read_reply(fd.get(), d);
    ASSERT_TRUE(r);
    EXPECT_NE(get_string(*r, "error")->find("zero-length"), std::string::npos);
    EXPECT_TRUE(wait_closed(fd.get()));
}

TEST_F(ControlServerTest, TooLargeReplyBecomesError) {
    make_server();
    start();
    auto r = call(make_request("big"));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_NE(get_string(*r, "error")->find("reply too large"), std::string::npos);
}

TEST_F(ControlServerTest, DeferredReply) {
    make_server();
    start();
    std::optional<Result<Json>> waited;
    std::thread waiter([&] { waited = call(make_request("wait")); });
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!deferred_.load() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(deferred_.load());
    auto rel = call(make_request("release"));
    ASSERT_TRUE(rel) << rel.error().message;
    EXPECT_EQ(get_bool(*rel, "ok"), true);
    waiter.join();
    ASSERT_TRUE(waited && *waited) << waited->error().message;
    EXPECT_EQ(get_bool(**waited, "released"), true);
}

TEST_F(ControlServerTest, DeferredRequestHoldsLaterOnesOnItsConnection) {
    make_server();
    start();
    UniqueFd fd = connect_to(path_);
    send_all(fd.get(),
             *encode_frame(dump_json(make_request("wait"))) +
                 *encode_frame(dump_json(make_request("echo", Json::object({{"msg", 7}})))));
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!deferred_.load() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    pollfd p{fd.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 50), 0);  // nothing answered yet, in particular not the echo
    ASSERT_TRUE(call(make_request("release")));
    FrameDecoder d;
    auto first = read_reply(fd.get(), d);
    ASSERT_TRUE(first);
    EXPECT_EQ(get_bool(*first, "released"), true);
    auto second = read_reply(fd.get(), d);
    ASSERT_TRUE(second);
    EXPECT_EQ(get_int(*second, "echo"), 7);
}

TEST_F(ControlServerTest, AbandonedAndImmediateDeferrals) {
    make_server();
    start();
    auto abandoned = call(make_request("abandon"));
    ASSERT_TRUE(abandoned) << abandoned.error().message;
    EXPECT_EQ(get_string(*abandoned, "error"), "request abandoned");
    auto now = call(make_request("now"));
    ASSERT_TRUE(now) << now.error().message;
    EXPECT_EQ(get_bool(*now, "now"), true);
}

TEST_F(ControlServerTest, DeferredReplyToVanishedClientIsHarmless) {
    make_server();
    start();
    {
        UniqueFd fd = connect_to(path_);
        send_all(fd.get(), *encode_frame(dump_json(make_request("wait"))));
        auto deadline = std::chrono::steady_clock::now() + kTimeout;
        while (!deferred_.load() && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(1ms);
        ASSERT_TRUE(deferred_.load());
    }
    // Once the server noticed the hangup, nothing waits any more.
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    for (;;) {
        auto rel = call(make_request("release"));
        ASSERT_TRUE(rel) << rel.error().message;
        if (get_string(*rel, "error") == "nothing waits") break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline);
        std::this_thread::sleep_for(5ms);
    }
    EXPECT_TRUE(call(make_request("echo", Json::object({{"msg", 1}}))));
}

TEST_F(ControlServerTest, CapsClients) {
    ControlServerOptions opts;
    opts.max_clients = 2;
    make_server(opts);
    start();
    UniqueFd a = connect_to(path_), b = connect_to(path_);
    // Make sure both are accepted before the third arrives.
    FrameDecoder da, db;
    send_all(a.get(), *encode_frame(dump_json(make_request("echo", Json::object({{"msg", 1}})))));
    send_all(b.get(), *encode_frame(dump_json(make_request("echo", Json::object({{"msg", 2}})))));
    ASSERT_TRUE(read_reply(a.get(), da));
    ASSERT_TRUE(read_reply(b.get(), db));
    auto r = call(make_request("echo", Json::object({{"msg", 3}})));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_NE(get_string(*r, "error")->find("too many clients"), std::string::npos);
    a.reset();
    // A slot frees up once the server saw the close.
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    for (;;) {
        auto again = call(make_request("echo", Json::object({{"msg", 4}})));
        ASSERT_TRUE(again);
        if (get_bool(*again, "ok") == true) break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline);
        std::this_thread::sleep_for(5ms);
    }
}

TEST_F(ControlServerTest, ClosesIdleConnections) {
    ControlServerOptions opts;
    opts.idle_timeout = 100ms;
    make_server(opts);
    start();
    UniqueFd fd = connect_to(path_);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(wait_closed(fd.get()));
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);
}

TEST_F(ControlServerTest, IdleTimeoutSparesDeferredRequests) {
    ControlServerOptions opts;
    opts.idle_timeout = 50ms;
    make_server(opts);
    start();
    std::optional<Result<Json>> waited;
    std::thread waiter([&] { waited = call(make_request("wait")); });
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!deferred_.load() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(call(make_request("release")));
    waiter.join();
    ASSERT_TRUE(waited && *waited) << waited->error().message;
    EXPECT_EQ(get_bool(**waited, "released"), true);
}

TEST_F(ControlServerTest, ClientTimesOutOnSilentSocket) {
    // Listening, never accepting: connect and send succeed, no reply comes.
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::listen(fd.get(), 4), 0);
    auto t0 = std::chrono::steady_clock::now();
    auto r = call(make_request("echo"), 100ms);
    auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "instance web is not responding");
    EXPECT_GE(took, 90ms);
    EXPECT_LT(took, 2s);
}

TEST_F(ControlServerTest, ClientReportsMissingAndStaleInstances) {
    auto missing = call(make_request("echo"), 100ms);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().message, "no instance named web");
    {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
        ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    }
    auto stale = call(make_request("echo"), 100ms);
    ASSERT_FALSE(stale);
    EXPECT_NE(stale.error().message.find("no instance named web"), std::string::npos);
}

TEST_F(ControlServerTest, ClientRejectsServerWithOtherVersion) {
    auto s = ControlServer::create(*loop_, path_, [](const Json&) {
        return Json::object({{"v", 9}, {"ok", true}});
    });
    ASSERT_TRUE(s);
    servers_.push_back(std::move(*s));
    start();
    auto r = call(make_request("x"));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("protocol version 9 not supported"), std::string::npos);
    stop();
}

TEST_F(ControlServerTest, SocketFileLifecycle) {
    // Refuses to take over an existing path.
    std::ofstream(path_) << "x";
    auto taken = ControlServer::create(*loop_, path_, [](const Json&) { return ok_response(); });
    ASSERT_FALSE(taken);
    EXPECT_NE(taken.error().message.find("already exists"), std::string::npos);
    fs::remove(path_);

    ControlServer* s = make_server();
    ASSERT_NE(s, nullptr);
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    servers_.clear();
    EXPECT_FALSE(fs::exists(path_));

    // A file that replaced ours is not removed.
    make_server();
    fs::remove(path_);
    std::ofstream(path_) << "someone else's";
    servers_.clear();
    EXPECT_TRUE(fs::exists(path_));

    auto long_path = ControlServer::create(*loop_, dir_ + "/" + std::string(120, 'x'),
                                           [](const Json&) { return ok_response(); });
    ASSERT_FALSE(long_path);
    EXPECT_NE(long_path.error().message.find("too long"), std::string::npos);
}

}  // namespace
}  // namespace kvmsandbox::control
