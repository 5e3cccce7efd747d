// User-mode networking through libslirp: the guest gets a private network
// (10.0.2.0/24 by default) with a gateway that NATs its TCP/UDP connections
// onto host sockets, a DHCP server and a DNS forwarder, and host ports can be
// forwarded to guest ports. No privileges needed.
//
// libslirp is not thread-safe. It runs on a thread of its own (a poll()
// loop over slirp's sockets, its timers and a wakeup eventfd), and every
// slirp call, wherever it comes from, holds `slirp_mu_`: the device's
// send() calls slirp_input() itself (which may answer at once, e.g. ARP),
// then wakes the loop so it polls any socket the frame created. Frames
// slirp emits are queued (bounded by frames and bytes; beyond that they are
// dropped and counted, TCP retransmits) until the device pulls them.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <slirp/libslirp.h>

#include "base/unique_fd.h"
#include "virtio/net/net_backend.h"

namespace kvmsandbox {

struct SlirpPortForward {
    bool udp = false;
    // Host address to listen on; "0.0.0.0" exposes the port beyond this host.
    std::string host_addr = "127.0.0.1";
    uint16_t host_port = 0;
    uint16_t guest_port = 0;
};

struct SlirpConfig {
    // IPv4 dotted quads. The host address is the gateway; slirp maps
    // connections to it onto the host's loopback (127.0.0.1).
    std::string network = "10.0.2.0";
    unsigned prefix_len = 24;
    std::string host = "10.0.2.2";
    std::string dns = "10.0.2.3";
    std::string guest = "10.0.2.15";  // the first DHCP lease; forwards go here
    bool ipv6 = false;                // fd00::/64, host fd00::2, dns fd00::3
    // Cut the guest off from everything but the forwards.
    bool restricted = false;
    std::string hostname;  // handed out by DHCP; empty: none
    uint16_t mtu = 1500;
    std::vector<SlirpPortForward> forwards;
    // Frames for the guest waiting for its receive buffers.
    size_t max_queued_frames = 1024;
    size_t max_queued_bytes = 4u << 20;
};

class SlirpBackend : public NetBackend {
  public:
    // Starts the slirp stack and its thread and sets up the forwards. A
    // forward whose host port is taken fails with e.g. "cannot forward host
    // port 8080: address in use".
    static Result<std::unique_ptr<SlirpBackend>> create(const SlirpConfig& config);
    // Stops and joins the thread, then shuts slirp down (closing every
    // host socket it had).
    ~SlirpBackend() override;
    SlirpBackend(const SlirpBackend&) = delete;
    SlirpBackend& operator=(const SlirpBackend&) = delete;

    std::string kind() const override { return "slirp"; }
    bool vnet_hdr() const override { return false; }
    std::optional<uint16_t> mtu() const override { return config_.mtu; }
    Result<void> set_offloads(const net::GuestOffloads&) override { return {}; }
    bool send(std::span<const uint8_t> frame) override;
    int rx_fd() const override { return rx_event_.get(); }
    size_t recv(std::span<uint8_t> buf) override;
    uint64_t rx_dropped() const override { return queue_dropped_.load(); }
    VirtioDevice::Counters counters() const override;

    // Frames waiting for the device (for tests and `stat`).
    size_t queued_frames() const;

  private:
    struct Timer {
        SlirpTimerId id = SLIRP_TIMER_RA;  // for timers made by timer_new_opaque
        void* cb_opaque = nullptr;
        SlirpTimerCb cb = nullptr;  // for timers made by timer_new
        int64_t expire_ms = -1;     // -1: not armed
    };

    explicit SlirpBackend(const SlirpConfig& config);
    Result<void> init();
    // Adds one port forward; slirp_mu_ held.
    Result<void> add_forward_locked(const SlirpPortForward& f, in_addr guest);
    void run();
    void wake();
    void fire_timers_locked();
    int64_t next_timer_ms_locked() const;

    // SlirpCb callbacks; `opaque` is the backend. All run on a thread that
    // holds slirp_mu_ (they are only called from inside slirp calls).
    static ssize_t cb_send_packet(const void* buf, size_t len, void* opaque);
    static void cb_guest_error(const char* msg, void* opaque);
    static int64_t cb_clock_get_ns(void* opaque);
    static void* cb_timer_new(SlirpTimerCb cb, void* cb_opaque, void* opaque);
    static void* cb_timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* opaque);
    static void cb_timer_free(void* timer, void* opaque);
    static void cb_timer_mod(void* timer, int64_t expire_ms, void* opaque);
    static void cb_register_poll_fd(int fd, void* opaque);
    static void cb_unregister_poll_fd(int fd, void* opaque);
    static void cb_notify(void* opaque);
    static int cb_add_poll(int fd, int events, void* opaque);
    static int cb_get_revents(int idx, void* opaque);

    const SlirpConfig config_;
    UniqueFd wake_;      // wakes the slirp loop
    UniqueFd rx_event_;  // readable while rx_queue_ is not empty

    std::mutex slirp_mu_;  // every slirp call, and timers_
    Slirp* slirp_ = nullptr;
    std::list<Timer> timers_;
    // The loop's poll set; only the slirp thread touches it.
    std::vector<pollfd> pollfds_;

    mutable std::mutex q_mu_;  // rx_queue_, queued_bytes_
    std::deque<std::vector<uint8_t>> rx_queue_;
    size_t queued_bytes_ = 0;

    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> queue_dropped_{0};
    std::atomic<uint64_t> tx_frames_{0};
    std::atomic<uint64_t> guest_errors_{0};
    std::thread thread_;
};

}  // namespace kvmsandbox
