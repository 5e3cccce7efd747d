// A fixed set of threads running queued jobs: where device work that may
// block (file I/O for 9p) runs, off the event loop and the vCPU threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvmsandbox {

class WorkerPool {
  public:
    explicit WorkerPool(size_t threads);
    ~WorkerPool();  // finishes queued jobs, then joins
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    void submit(std::function<void()> job);

  private:
    void run();

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace kvmsandbox
