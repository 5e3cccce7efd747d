#include "virtio/rng/rng.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fake_driver.h"

namespace kvmsandbox {
namespace {

using fake::DriverQueue;
using fake::FakeGuest;
using fake::FakeInterrupt;
using fake::Seg;

constexpr uint16_t kQSize = 64;

uint64_t counter(const VirtioDevice& d, const std::string& name) {
    for (const auto& [n, v] : d.counters())
        if (n == name) return v;
    ADD_FAILURE() << "no counter " << name;
    return 0;
}

// Random bytes are all zero with negligible probability for the sizes used.
bool all_zero(const std::vector<uint8_t>& v) {
    return std::all_of(v.begin(), v.end(), [](uint8_t b) { return b == 0; });
}

class VirtioRngTest : public ::testing::Test {
  protected:
    VirtioRngTest() : g_(1 << 20), q_(g_, kQSize, kQSize) {}

    void activate() {
        SplitQueue* qs[] = {q_.ptr()};
        auto r = dev_.activate(virtio::bit(VIRTIO_F_VERSION_1), qs, irq_);
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }

    FakeGuest g_;
    DriverQueue q_;
    FakeInterrupt irq_;
    VirtioRng dev_;
};

TEST_F(VirtioRngTest, Basics) {
    EXPECT_EQ(dev_.device_type(), VIRTIO_ID_RNG);
    EXPECT_EQ(dev_.device_features(), 0u);
    EXPECT_EQ(dev_.num_queues(), 1);
    EXPECT_EQ(dev_.config_size(), 0u);
    EXPECT_EQ(dev_.name(), "rng");
    EXPECT_EQ(counter(dev_, "requests"), 0u);
    EXPECT_EQ(counter(dev_, "bytes"), 0u);
}

TEST_F(VirtioRngTest, FillsBuffer) {
    activate();
    const uint16_t head = q_.add_in(256);
    dev_.queue_notify(0);
    auto u = q_.collect_used();
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].head, head);
    EXPECT_EQ(u[0].len, 256u);
    EXPECT_FALSE(all_zero(u[0].written(g_)));
    EXPECT_EQ(irq_.signals_for(0), 1u);
    EXPECT_EQ(counter(dev_, "requests"), 1u);
    EXPECT_EQ(counter(dev_, "bytes"), 256u);
}

TEST_F(VirtioRngTest, CapsEachRequest) {
    activate();
    const uint32_t big = VirtioRng::kMaxBytesPerRequest * 2;
    // Two buffers: the first one is filled whole, the second up to the cap.
    const uint32_t first = VirtioRng::kMaxBytesPerRequest / 2;
    const uint64_t a = g_.alloc(first);
    const uint64_t b = g_.alloc(big);
    q_.add_chain({{a, first, true}, {b, big, true}});
    dev_.queue_notify(0);
    auto u = q_.collect_used();
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].len, VirtioRng::kMaxBytesPerRequest);
    EXPECT_FALSE(all_zero(g_.read(a, first)));
    const uint32_t in_b = VirtioRng::kMaxBytesPerRequest - first;
    EXPECT_FALSE(all_zero(g_.read(b + in_b - 64, 64)));
    // Nothing past the cap was touched.
    EXPECT_TRUE(all_zero(g_.read(b + in_b, big - in_b)));
    EXPECT_EQ(counter(dev_, "bytes"), VirtioRng::kMaxBytesPerRequest);
}

TEST_F(VirtioRngTest, SeveralChains) {
    activate();
    q_.add_in(16);
    q_.add_in(4096);
    q_.add_chain({{g_.alloc(100), 100, true}, {g_.alloc(28), 28, true}});
    dev_.queue_notify(0);
    auto u = q_.collect_used();
    ASSERT_EQ(u.size(), 3u);
    EXPECT_EQ(u[0].len, 16u);
    EXPECT_EQ(u[1].len, 4096u);
    EXPECT_EQ(u[2].len, 128u);
    EXPECT_NE(u[1].written(g_), u[2].written(g_));
    // One interrupt for the batch.
    EXPECT_EQ(irq_.signals_for(0), 1u);
    EXPECT_EQ(counter(dev_, "requests"), 3u);
    EXPECT_EQ(counter(dev_, "bytes"), 16u + 4096u + 128u);
}

TEST_F(VirtioRngTest, ZeroLengthBufferBreaksRing) {
    // A zero-length descriptor is against the ring rules (SplitQueue
    // refuses it): the device stops and asks for a reset.
    activate();
    q_.add_in(32);
    q_.add_chain({{g_.alloc(8), 0, true}});
    dev_.queue_notify(0);
    auto u = q_.collect_used();
    ASSERT_EQ(u.size(), 1u);  // the good chain before it was served
    EXPECT_EQ(u[0].len, 32u);
    EXPECT_EQ(irq_.needs_reset(), 1);
    q_.add_in(32);
    dev_.queue_notify(0);
    EXPECT_TRUE(q_.collect_used().empty());
}

TEST_F(VirtioRngTest, ReadableBufferNeedsReset) {
    activate();
    q_.add_out("please");
    dev_.queue_notify(0);
    EXPECT_EQ(q_.used_idx(), 0);
    EXPECT_EQ(irq_.needs_reset(), 1);
    EXPECT_EQ(counter(dev_, "requests"), 0u);
    // Stopped until reset.
    q_.add_in(16);
    dev_.queue_notify(0);
    EXPECT_EQ(q_.used_idx(), 0);
}

TEST_F(VirtioRngTest, NotifyBeforeActivationIsIgnored) {
    q_.add_in(16);
    dev_.queue_notify(0);
    EXPECT_EQ(q_.used_idx(), 0);
}

TEST_F(VirtioRngTest, Reset) {
    activate();
    q_.add_out("bad");
    dev_.queue_notify(0);
    ASSERT_EQ(irq_.needs_reset(), 1);
    dev_.reset();
    // After reset: no access to the old queue.
    q_.add_in(16);
    dev_.queue_notify(0);
    EXPECT_EQ(q_.used_idx(), 0);
    // The driver starts over; the device serves again.
    q_.configure();
    activate();
    q_.add_in(16);
    dev_.queue_notify(0);
    auto u = q_.collect_used();
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].len, 16u);
}

}  // namespace
}  // namespace kvmsandbox
