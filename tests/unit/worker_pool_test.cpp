#include "base/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace kvmsandbox {
namespace {

using namespace std::chrono_literals;

TEST(WorkerPool, RunsEveryJob) {
    std::atomic<int> done{0};
    std::mutex mu;
    std::condition_variable cv;
    {
        WorkerPool pool(4);
        for (int i = 0; i < 1000; ++i)
            pool.submit([&] {
                if (++done == 1000) {
                    std::lock_guard lock(mu);
                    cv.notify_all();
                }
            });
        std::unique_lock lock(mu);
        EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return done.load() == 1000; }));
    }
    EXPECT_EQ(done.load(), 1000);
}

TEST(WorkerPool, RunsJobsOffTheCallingThread) {
    std::thread::id ran_on;
    {
        WorkerPool pool(1);
        pool.submit([&] { ran_on = std::this_thread::get_id(); });
    }
    EXPECT_NE(ran_on, std::thread::id());
    EXPECT_NE(ran_on, std::this_thread::get_id());
}

TEST(WorkerPool, DestructorFinishesQueuedJobs) {
    std::atomic<int> done{0};
    {
        WorkerPool pool(1);
        // The first job holds the only thread while the rest queue up.
        pool.submit([] { std::this_thread::sleep_for(50ms); });
        for (int i = 0; i < 200; ++i) pool.submit([&] { ++done; });
    }
    EXPECT_EQ(done.load(), 200);
}

TEST(WorkerPool, ZeroThreadsMeansOne) {
    std::atomic<int> done{0};
    {
        WorkerPool pool(0);
        pool.submit([&] { ++done; });
    }
    EXPECT_EQ(done.load(), 1);
}

TEST(WorkerPool, ThreadsRunJobsConcurrently) {
    // Four jobs that each wait for all four to have started: only completes
    // if the pool really runs them in parallel.
    constexpr int kThreads = 4;
    std::mutex mu;
    std::condition_variable cv;
    int started = 0;
    std::atomic<int> met{0};
    std::set<std::thread::id> ids;
    {
        WorkerPool pool(kThreads);
        for (int i = 0; i < kThreads; ++i)
            pool.submit([&] {
                std::unique_lock lock(mu);
                ++started;
                ids.insert(std::this_thread::get_id());
                cv.notify_all();
                if (cv.wait_for(lock, 10s, [&] { return started == kThreads; })) ++met;
            });
    }
    EXPECT_EQ(met.load(), kThreads);
    EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads));
}

TEST(WorkerPool, JobsMaySubmitJobs) {
    std::atomic<int> done{0};
    std::mutex mu;
    std::condition_variable cv;
    {
        WorkerPool pool(2);
        pool.submit([&] {
            pool.submit([&] {
                ++done;
                std::lock_guard lock(mu);
                cv.notify_all();
            });
        });
        std::unique_lock lock(mu);
        EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return done.load() == 1; }));
    }
    EXPECT_EQ(done.load(), 1);
}

}  // namespace
}  // namespace kvmsandbox
