// A gate that parks a worker thread inside a fake backend until the test
// opens it: tests use it to hold a request in flight (a reset or another
// request arriving meanwhile) at a point they choose.
#pragma once

#include <condition_variable>
#include <mutex>

namespace kvmsandbox::fake {

class Gate {
  public:
    // Called by the parked thread: says it arrived, then waits for open().
    void wait() {
        std::unique_lock lock(mu_);
        entered_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return open_; });
    }
    void wait_entered() {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return entered_; });
    }
    void open() {
        std::lock_guard lock(mu_);
        open_ = true;
        cv_.notify_all();
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool entered_ = false;
    bool open_ = false;
};

}  // namespace kvmsandbox::fake
