#include "virtio/net/slirp_backend.h"

#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <system_error>

#include "base/log.h"
#include "base/thread_role.h"

namespace kvmsandbox {

namespace {

Result<in_addr> parse_ipv4(const std::string& s, const char* what) {
    in_addr a{};
    if (::inet_pton(AF_INET, s.c_str(), &a) != 1)
        return failf("invalid slirp {} address '{}' (expected a dotted IPv4 address)", what, s);
    return a;
}

int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void drain_eventfd(int fd) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(fd, &v, sizeof(v));
}

void signal_eventfd(int fd) {
    const uint64_t one = 1;
    // EAGAIN only if the counter is saturated, i.e. already readable.
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof(one));
}

}  // namespace

Result<std::unique_ptr<SlirpBackend>> SlirpBackend::create(const SlirpConfig& config) {
    std::unique_ptr<SlirpBackend> b(new SlirpBackend(config));
    KS_TRY(b->init());
    return b;
}

SlirpBackend::SlirpBackend(const SlirpConfig& config) : config_(config) {}

Result<void> SlirpBackend::init() {
    const SlirpConfig& c = config_;
    KS_TRY_ASSIGN(auto net, parse_ipv4(c.network, "network"));
    KS_TRY_ASSIGN(auto host, parse_ipv4(c.host, "host"));
    KS_TRY_ASSIGN(auto dns, parse_ipv4(c.dns, "DNS"));
    KS_TRY_ASSIGN(auto guest, parse_ipv4(c.guest, "guest"));
    if (c.prefix_len < 8 || c.prefix_len > 30)
        return failf("invalid slirp network prefix length /{} (8..30)", c.prefix_len);
    const uint32_t mask = ~uint32_t{0} << (32 - c.prefix_len);
    const uint32_t base = ntohl(net.s_addr) & mask;
    auto inside = [&](in_addr a) { return (ntohl(a.s_addr) & mask) == base; };
    for (auto [a, what] : {std::pair{host, "host"}, {dns, "DNS"}, {guest, "guest"}}) {
        if (!inside(a))
            return failf("slirp {} address {} is not inside {}/{}", what, inet_ntoa(a), c.network,
                         c.prefix_len);
    }
    if (c.mtu < 576 || c.mtu > 65521) return failf("invalid slirp MTU {} (576..65521)", c.mtu);
    if (c.max_queued_frames == 0 || c.max_queued_bytes < net::kMaxFrameSize)
        return fail("slirp receive queue limits are too small");

    wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) return fail_errno("slirp: eventfd");
    rx_event_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!rx_event_) return fail_errno("slirp: eventfd");

    // slirp keeps a pointer to the callbacks: they must outlive it.
    static const SlirpCb kCallbacks = {
        .send_packet = cb_send_packet,
        .guest_error = cb_guest_error,
        .clock_get_ns = cb_clock_get_ns,
        .timer_new = cb_timer_new,
        .timer_free = cb_timer_free,
        .timer_mod = cb_timer_mod,
        .register_poll_fd = cb_register_poll_fd,
        .unregister_poll_fd = cb_unregister_poll_fd,
        .notify = cb_notify,
        .init_completed = nullptr,
        .timer_new_opaque = cb_timer_new_opaque,
    };

    // libslirp's own SlirpConfig; the hostname points into config_, which
    // lives as long as the stack.
    ::SlirpConfig sc{};
    sc.version = 4;
    sc.restricted = c.restricted ? 1 : 0;
    sc.in_enabled = true;
    sc.vnetwork.s_addr = htonl(base);
    sc.vnetmask.s_addr = htonl(mask);
    sc.vhost = host;
    sc.vdhcp_start = guest;
    sc.vnameserver = dns;
    sc.in6_enabled = c.ipv6;
    if (c.ipv6) {
        ::inet_pton(AF_INET6, "fd00::", &sc.vprefix_addr6);
        sc.vprefix_len = 64;
        ::inet_pton(AF_INET6, "fd00::2", &sc.vhost6);
        ::inet_pton(AF_INET6, "fd00::3", &sc.vnameserver6);
    }
    sc.vhostname = config_.hostname.empty() ? nullptr : config_.hostname.c_str();
    sc.if_mtu = c.mtu;
    sc.if_mru = c.mtu;
    // Connections to the gateway reach the host's loopback: that is how a
    // guest talks to services on its host.
    sc.disable_host_loopback = false;
    sc.enable_emu = false;

    {
        std::lock_guard lock(slirp_mu_);
        slirp_ = ::slirp_new(&sc, &kCallbacks, this);
        if (!slirp_) return fail("slirp: cannot create the network stack");
        for (const auto& f : c.forwards) KS_TRY(add_forward_locked(f, guest));
    }

    try {
        thread_ = std::thread([this] { run(); });
    } catch (const std::system_error& e) {
        return failf("slirp: cannot start its thread: {}", e.what());
    }
    return {};
}

Result<void> SlirpBackend::add_forward_locked(const SlirpPortForward& f, in_addr guest) {
    KS_TRY_ASSIGN(auto haddr, parse_ipv4(f.host_addr, "forward host"));
    if (f.host_port == 0 || f.guest_port == 0)
        return failf("cannot forward {} port {} to guest port {}: ports must be 1..65535",
                     f.udp ? "UDP" : "TCP", f.host_port, f.guest_port);
    errno = 0;
    if (::slirp_add_hostfwd(slirp_, f.udp ? 1 : 0, haddr, f.host_port, guest, f.guest_port) < 0) {
        const int e = errno;
        const char* why = e == EADDRINUSE      ? "address in use"
                          : e == EACCES        ? "permission denied"
                          : e == EADDRNOTAVAIL ? "address not available on this host"
                          : e != 0             ? std::strerror(e)
                                               : "slirp refused it";
        return failf("cannot forward host {}port {}: {}", f.udp ? "UDP " : "", f.host_port, why);
    }
    return {};
}

SlirpBackend::~SlirpBackend() {
    stop_.store(true);
    if (wake_) wake();
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(slirp_mu_);
    if (slirp_) ::slirp_cleanup(slirp_);
    slirp_ = nullptr;
}

void SlirpBackend::wake() {
    signal_eventfd(wake_.get());
}

// ---- the device side --------------------------------------------------------

bool SlirpBackend::send(std::span<const uint8_t> frame) {
    if (frame.size() < net::kEthHeaderSize || frame.size() > net::kMaxFrameSize) return false;
    {
        std::lock_guard lock(slirp_mu_);
        ::slirp_input(slirp_, frame.data(), static_cast<int>(frame.size()));
    }
    tx_frames_.fetch_add(1, std::memory_order_relaxed);
    // The frame may have opened a socket (a connect, a UDP flow) that the
    // loop, asleep in poll(), does not watch yet.
    wake();
    return true;
}

size_t SlirpBackend::recv(std::span<uint8_t> buf) {
    std::lock_guard lock(q_mu_);
    while (!rx_queue_.empty()) {
        std::vector<uint8_t> f = std::move(rx_queue_.front());
        rx_queue_.pop_front();
        queued_bytes_ -= f.size();
        if (rx_queue_.empty()) drain_eventfd(rx_event_.get());
        if (f.size() > buf.size()) {
            queue_dropped_.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        std::memcpy(buf.data(), f.data(), f.size());
        return f.size();
    }
    return 0;
}

size_t SlirpBackend::queued_frames() const {
    std::lock_guard lock(q_mu_);
    return rx_queue_.size();
}

VirtioDevice::Counters SlirpBackend::counters() const {
    return {{"slirp_queue_dropped", queue_dropped_.load(std::memory_order_relaxed)},
            {"slirp_queued", queued_frames()},
            {"slirp_guest_errors", guest_errors_.load(std::memory_order_relaxed)}};
}

// ---- the slirp thread -------------------------------------------------------

void SlirpBackend::run() {
    enter_thread_role(ThreadRole::Slirp);
    while (!stop_.load()) {
        uint32_t timeout = UINT32_MAX;
        {
            std::lock_guard lock(slirp_mu_);
            pollfds_.clear();
            pollfds_.push_back({wake_.get(), POLLIN, 0});
            ::slirp_pollfds_fill(slirp_, &timeout, cb_add_poll, this);
            const int64_t next = next_timer_ms_locked();
            if (next >= 0) {
                const int64_t left = std::max<int64_t>(0, next - monotonic_ns() / 1'000'000);
                timeout = static_cast<uint32_t>(std::min<int64_t>(timeout, left));
            }
        }
        const int t =
            timeout == UINT32_MAX ? -1 : static_cast<int>(std::min<uint32_t>(timeout, INT_MAX));
        int rc = ::poll(pollfds_.data(), pollfds_.size(), t);
        if (rc < 0 && errno == EINTR) {
            rc = 0;
            for (auto& p : pollfds_) p.revents = 0;
        }
        if (rc > 0 && (pollfds_[0].revents & POLLIN)) drain_eventfd(wake_.get());
        if (stop_.load()) break;
        std::lock_guard lock(slirp_mu_);
        ::slirp_pollfds_poll(slirp_, rc < 0 ? 1 : 0, cb_get_revents, this);
        fire_timers_locked();
    }
}

int64_t SlirpBackend::next_timer_ms_locked() const {
    int64_t next = -1;
    for (const auto& t : timers_)
        if (t.expire_ms >= 0 && (next < 0 || t.expire_ms < next)) next = t.expire_ms;
    return next;
}

void SlirpBackend::fire_timers_locked() {
    const int64_t now = monotonic_ns() / 1'000'000;
    std::vector<Timer*> due;
    for (auto& t : timers_)
        if (t.expire_ms >= 0 && t.expire_ms <= now) due.push_back(&t);
    for (Timer* t : due) {
        // A callback may free or re-arm other timers: fire only those still here.
        auto it =
            std::find_if(timers_.begin(), timers_.end(), [t](const Timer& x) { return &x == t; });
        if (it == timers_.end() || it->expire_ms < 0 || it->expire_ms > now) continue;
        it->expire_ms = -1;
        if (it->cb)
            it->cb(it->cb_opaque);
        else
            ::slirp_handle_timer(slirp_, it->id, it->cb_opaque);
    }
}

// ---- callbacks --------------------------------------------------------------

ssize_t SlirpBackend::cb_send_packet(const void* buf, size_t len, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    if (len > net::kMaxFrameSize) {
        self->queue_dropped_.fetch_add(1, std::memory_order_relaxed);
        return static_cast<ssize_t>(len);
    }
    std::lock_guard lock(self->q_mu_);
    // A guest that posts no receive buffers must not make us buffer without
    // bound: past the limits, frames are dropped (TCP will retransmit).
    if (self->rx_queue_.size() >= self->config_.max_queued_frames ||
        self->queued_bytes_ + len > self->config_.max_queued_bytes) {
        self->queue_dropped_.fetch_add(1, std::memory_order_relaxed);
        return static_cast<ssize_t>(len);
    }
    const auto* p = static_cast<const uint8_t*>(buf);
    self->rx_queue_.emplace_back(p, p + len);
    self->queued_bytes_ += len;
    if (self->rx_queue_.size() == 1) signal_eventfd(self->rx_event_.get());
    return static_cast<ssize_t>(len);
}

void SlirpBackend::cb_guest_error(const char* msg, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    self->guest_errors_.fetch_add(1, std::memory_order_relaxed);
    log::debug("slirp: guest error: {}", msg ? msg : "?");
}

int64_t SlirpBackend::cb_clock_get_ns(void*) {
    return monotonic_ns();
}

void* SlirpBackend::cb_timer_new(SlirpTimerCb cb, void* cb_opaque, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    Timer t;
    t.cb = cb;
    t.cb_opaque = cb_opaque;
    self->timers_.push_back(t);
    return &self->timers_.back();
}

void* SlirpBackend::cb_timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    Timer t;
    t.id = id;
    t.cb_opaque = cb_opaque;
    self->timers_.push_back(t);
    return &self->timers_.back();
}

void SlirpBackend::cb_timer_free(void* timer, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    self->timers_.remove_if([timer](const Timer& t) { return &t == timer; });
}

void SlirpBackend::cb_timer_mod(void* timer, int64_t expire_ms, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    for (auto& t : self->timers_)
        if (&t == timer) t.expire_ms = std::max<int64_t>(expire_ms, 0);
    // The loop may be asleep with a longer timeout.
    self->wake();
}

void SlirpBackend::cb_register_poll_fd(int, void*) {}
void SlirpBackend::cb_unregister_poll_fd(int, void*) {}

void SlirpBackend::cb_notify(void* opaque) {
    static_cast<SlirpBackend*>(opaque)->wake();
}

int SlirpBackend::cb_add_poll(int fd, int events, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    short ev = 0;
    if (events & SLIRP_POLL_IN) ev |= POLLIN;
    if (events & SLIRP_POLL_OUT) ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI) ev |= POLLPRI;
    self->pollfds_.push_back({fd, ev, 0});
    return static_cast<int>(self->pollfds_.size() - 1);
}

int SlirpBackend::cb_get_revents(int idx, void* opaque) {
    auto* self = static_cast<SlirpBackend*>(opaque);
    // A socket slirp_input() created after the fill has no slot (index -1);
    // stay inside our array whatever slirp asks.
    if (idx <= 0 || static_cast<size_t>(idx) >= self->pollfds_.size()) return 0;
    const short re = self->pollfds_[idx].revents;
    int r = 0;
    if (re & POLLIN) r |= SLIRP_POLL_IN;
    if (re & POLLOUT) r |= SLIRP_POLL_OUT;
    if (re & POLLPRI) r |= SLIRP_POLL_PRI;
    if (re & POLLERR) r |= SLIRP_POLL_ERR;
    if (re & POLLHUP) r |= SLIRP_POLL_HUP;
    return r;
}

}  // namespace kvmsandbox
