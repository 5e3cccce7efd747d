#include "base/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace kvmsandbox {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) return fail_errno("epoll_create1");
    UniqueFd sfd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!sfd) return fail_errno("eventfd");
    UniqueFd pfd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!pfd) return fail_errno("eventfd");
    std::unique_ptr<EventLoop> loop(new EventLoop(std::move(ep), std::move(sfd), std::move(pfd)));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = loop->stopfd_.get();
    if (::epoll_ctl(loop->ep_.get(), EPOLL_CTL_ADD, loop->stopfd_.get(), &ev) < 0)
        return fail_errno("epoll_ctl");
    EventLoop* raw = loop.get();
    if (auto r = loop->add(raw->postfd_.get(), EPOLLIN, [raw](uint32_t) { raw->run_posted(); }); !r)
        return std::unexpected(r.error());
    return loop;
}

Result<void> EventLoop::add(int fd, uint32_t events, Handler h) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return fail_errno("epoll_ctl add");
    handlers_[fd] = std::make_shared<Handler>(std::move(h));
    return {};
}

Result<void> EventLoop::modify(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return fail_errno("epoll_ctl mod");
    return {};
}

void EventLoop::remove(int fd) {
    ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr);
    handlers_.erase(fd);
}

Result<void> EventLoop::run() {
    epoll_event evs[32];
    while (!stop_.load()) {
        int n = ::epoll_wait(ep_.get(), evs, 32, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno("epoll_wait");
        }
        for (int i = 0; i < n && !stop_.load(); ++i) {
            int fd = evs[i].data.fd;
            if (fd == stopfd_.get()) continue;
            auto it = handlers_.find(fd);
            if (it == handlers_.end()) continue;  // removed by an earlier handler
            auto h = it->second;
            (*h)(evs[i].events);
        }
    }
    return {};
}

void EventLoop::request_stop() {
    stop_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(stopfd_.get(), &one, sizeof(one));
}

void EventLoop::post(std::function<void()> f) {
    {
        std::lock_guard lock(post_mu_);
        posted_.push_back(std::move(f));
    }
    uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(postfd_.get(), &one, sizeof(one));
}

void EventLoop::run_posted() {
    uint64_t n;
    [[maybe_unused]] auto r = ::read(postfd_.get(), &n, sizeof(n));
    std::vector<std::function<void()>> todo;
    {
        std::lock_guard lock(post_mu_);
        todo.swap(posted_);
    }
    for (auto& f : todo) f();
}

}  // namespace kvmsandbox
