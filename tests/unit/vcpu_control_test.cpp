#include "vmm/vcpu_control.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace kvmsandbox {
namespace {

using namespace std::chrono_literals;

// Threads that stand in for vCPUs: each counts "guest work" between
// checkpoints, the way vcpu_loop calls checkpoint() after each KVM_RUN.
struct FakeVcpus {
    explicit FakeVcpus(VcpuControl& c, size_t n) : ctl(c), work(n) {
        for (size_t i = 0; i < n; ++i)
            threads.emplace_back([this, i] {
                while (!stop.load()) {
                    work[i].fetch_add(1);
                    ctl.checkpoint();
                    std::this_thread::yield();
                }
            });
    }
    ~FakeVcpus() {
        stop = true;
        ctl.shutdown();
        for (auto& t : threads) t.join();
    }
    uint64_t total() const {
        uint64_t s = 0;
        for (auto& w : work) s += w.load();
        return s;
    }
    VcpuControl& ctl;
    std::atomic<bool> stop{false};
    std::vector<std::atomic<uint64_t>> work;
    std::vector<std::thread> threads;
};

TEST(VcpuControl, PauseStopsAllWorkAndResumeRestartsIt) {
    VcpuControl ctl(3);
    std::atomic<int> kicks{0};
    ctl.set_kicker([&](size_t) { kicks.fetch_add(1); });
    FakeVcpus v(ctl, 3);
    ASSERT_TRUE(ctl.pause(5000ms));
    EXPECT_TRUE(ctl.paused());
    EXPECT_EQ(kicks.load(), 3);
    const uint64_t frozen = v.total();
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(v.total(), frozen);
    ctl.resume();
    EXPECT_FALSE(ctl.paused());
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (v.total() == frozen && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    EXPECT_GT(v.total(), frozen);
}

TEST(VcpuControl, NestedPausesNeedAsManyResumes) {
    VcpuControl ctl(2);
    FakeVcpus v(ctl, 2);
    ASSERT_TRUE(ctl.pause(5000ms));
    ASSERT_TRUE(ctl.pause(5000ms));
    ctl.resume();
    EXPECT_TRUE(ctl.paused());
    const uint64_t frozen = v.total();
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(v.total(), frozen);
    ctl.resume();
    EXPECT_FALSE(ctl.paused());
    ctl.resume();  // one too many: harmless
    EXPECT_FALSE(ctl.paused());
}

TEST(VcpuControl, PauseTimesOutWhenAVcpuNeverReachesACheckpoint) {
    VcpuControl ctl(2);
    FakeVcpus v(ctl, 1);  // the second "vCPU" never checks in
    auto r = ctl.pause(100ms);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("1 of 2"), std::string::npos) << r.error().message;
    EXPECT_FALSE(ctl.paused());
    // The failed pause undid itself: the one vCPU runs again.
    const uint64_t before = v.total();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (v.total() == before && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    EXPECT_GT(v.total(), before);
}

TEST(VcpuControl, ShutdownReleasesParkedVcpusAndRefusesPauses) {
    VcpuControl ctl(2);
    {
        FakeVcpus v(ctl, 2);
        ASSERT_TRUE(ctl.pause(5000ms));
        // ~FakeVcpus calls shutdown(): the parked threads must return to be joined.
    }
    EXPECT_FALSE(ctl.pause(100ms));
}

}  // namespace
}  // namespace kvmsandbox
