// The VM process's main loop: epoll over the host side of devices, the
// terminal, signals and the control socket. Single-threaded by design; other
// threads talk to it through eventfds (wake(), request_stop()).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kvmsandbox {

class EventLoop {
  public:
    using Handler = std::function<void(uint32_t events)>;

    static Result<std::unique_ptr<EventLoop>> create();

    // Registers fd (not owned) for `events` (EPOLLIN, ...). Loop thread only.
    Result<void> add(int fd, uint32_t events, Handler h);
    Result<void> modify(int fd, uint32_t events);
    void remove(int fd);

    // Runs until request_stop(). Returns an error only if epoll itself fails.
    Result<void> run();
    // Thread-safe.
    void request_stop();
    // Runs `f` on the loop thread soon (thread-safe). For work that must not
    // run where it is discovered, e.g. under a device lock.
    void post(std::function<void()> f);
    bool stopping() const { return stop_.load(); }

  private:
    EventLoop(UniqueFd ep, UniqueFd stopfd, UniqueFd postfd)
        : ep_(std::move(ep)), stopfd_(std::move(stopfd)), postfd_(std::move(postfd)) {}
    void run_posted();
    UniqueFd ep_;
    UniqueFd stopfd_;
    UniqueFd postfd_;
    std::mutex post_mu_;
    std::vector<std::function<void()>> posted_;
    std::atomic<bool> stop_{false};
    // Handlers are held by shared_ptr so one may remove itself while running.
    std::unordered_map<int, std::shared_ptr<Handler>> handlers_;
};

}  // namespace kvmsandbox
