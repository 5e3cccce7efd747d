#include "control/client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>

#include "base/unique_fd.h"
#include "control/frame.h"
#include "control/protocol.h"

namespace kvmsandbox::control {

namespace {

using Clock = std::chrono::steady_clock;

std::string instance_name_of(const std::string& socket_path) {
    std::string name = socket_path.substr(socket_path.rfind('/') + 1);
    constexpr std::string_view kSuffix = ".sock";
    if (name.size() > kSuffix.size() && name.ends_with(kSuffix))
        name.resize(name.size() - kSuffix.size());
    return name;
}

// Milliseconds left until `deadline` for poll(), rounded up so we never spin
// on a zero timeout just before it.
int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

// Waits for `events` on fd. Returns false on timeout.
Result<bool> wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        int ms = remaining_ms(deadline);
        if (ms == 0) return false;
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, ms);
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) return fail_errno("poll");
    }
}

}  // namespace

Result<Json> ControlClient::request(const std::string& socket_path, const Json& request,
                                    std::chrono::milliseconds timeout) {
    const std::string name = instance_name_of(socket_path);
    const auto deadline = Clock::now() + timeout;
    auto not_responding = [&] { return failf("instance {} is not responding", name); };

    KS_TRY_ASSIGN(auto frame, encode_frame(dump_json(request)));

    sockaddr_un addr{};
    if (socket_path.size() >= sizeof(addr.sun_path))
        return failf("socket path {} is too long for a unix socket", socket_path);
    addr.sun_family = AF_UNIX;
    socket_path.copy(addr.sun_path, socket_path.size());

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket(AF_UNIX)");
    // A unix connect() blocks only while the listener's backlog is full, and
    // for at most the send timeout: bound it by our deadline.
    {
        auto ms = std::max(remaining_ms(deadline), 1);
        timeval tv{ms / 1000, (ms % 1000) * 1000};
        if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
            return fail_errno("setsockopt(SO_SNDTIMEO)");
    }
    for (;;) {
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
        if (errno == EINTR) continue;
        if (errno == ENOENT || errno == ENOTDIR) return failf("no instance named {}", name);
        if (errno == ECONNREFUSED)
            return failf("no instance named {} (its socket is left over from a dead instance)",
                         name);
        if (errno == EAGAIN || errno == EINPROGRESS || errno == ETIMEDOUT) return not_responding();
        return fail_errno(fmt::format("cannot connect to instance {}", name));
    }
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
        return fail_errno("fcntl(O_NONBLOCK)");

    size_t sent = 0;
    while (sent < frame.size()) {
        ssize_t n = ::send(fd.get(), frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            KS_TRY_ASSIGN(auto ready, wait_for(fd.get(), POLLOUT, deadline));
            if (!ready) return not_responding();
            continue;
        }
        // The server may have refused us (wrong uid, too many clients) and
        // closed before reading; its reason is already waiting to be read.
        if (errno == EPIPE || errno == ECONNRESET) break;
        return fail_errno(fmt::format("cannot send to instance {}", name));
    }

    FrameDecoder decoder;
    for (;;) {
        if (auto payload = decoder.next()) {
            auto response = parse_json(*payload, kMaxFrame);
            if (!response)
                return failf("instance {} sent an invalid response: {}", name,
                             response.error().message);
            if (auto r = validate_response(*response); !r)
                return failf("instance {} sent an invalid response: {}", name, r.error().message);
            return response;
        }
        if (decoder.bad())
            return failf("instance {} sent an invalid response: {}", name, decoder.error());
        char buf[16 * 1024];
        ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
        if (n > 0) {
            decoder.feed(std::string_view(buf, static_cast<size_t>(n)));
            continue;
        }
        if (n == 0 || errno == ECONNRESET)
            return failf("instance {} closed the connection without replying", name);
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            KS_TRY_ASSIGN(auto ready, wait_for(fd.get(), POLLIN, deadline));
            if (!ready) return not_responding();
            continue;
        }
        return fail_errno(fmt::format("cannot read from instance {}", name));
    }
}

}  // namespace kvmsandbox::control
