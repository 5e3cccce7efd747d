#include "virtio/balloon/balloon.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/mmap.h"
#include "fake_driver.h"

namespace kvmsandbox {
namespace {

using fake::DriverQueue;
using fake::FakeGuest;
using fake::FakeInterrupt;
using fake::Seg;
using B = VirtioBalloon;

constexpr uint16_t kQSize = 64;
constexpr uint64_t kRam = 1 << 20;
// FakeGuest's RAM is [0x10000, 0x110000): pages 0x10 .. 0x10f. Rings and
// buffers are allocated from the bottom, so tests balloon pages at the top.
constexpr uint32_t kFirstPfn = 0x10;
constexpr uint32_t kEndPfn = 0x110;

std::vector<uint8_t> le32s(const std::vector<uint32_t>& v) {
    std::vector<uint8_t> out;
    for (uint32_t x : v)
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(x >> (8 * i)));
    return out;
}

// One packed virtio_balloon_stat entry.
std::vector<uint8_t> stat(uint16_t tag, uint64_t val) {
    std::vector<uint8_t> out{static_cast<uint8_t>(tag), static_cast<uint8_t>(tag >> 8)};
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(val >> (8 * i)));
    return out;
}

std::vector<uint8_t> cat(const std::vector<std::vector<uint8_t>>& parts) {
    std::vector<uint8_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

struct Released {
    uint64_t gpa;
    uint8_t* host;
    size_t len;
};

class VirtioBalloonTest : public ::testing::Test {
  protected:
    VirtioBalloonTest()
        : dev(g.mem(), kRam, [this](uint64_t gpa, std::span<uint8_t> host) {
              released.push_back({gpa, host.data(), host.size()});
              return release_ok;
          }) {
        for (int i = 0; i < 3; ++i)
            queues.push_back(std::make_unique<DriverQueue>(g, kQSize, B::kQueueSize));
    }
    ~VirtioBalloonTest() override { dev.reset(); }

    void activate(uint64_t features = virtio::bit(VIRTIO_BALLOON_F_STATS_VQ) |
                                      virtio::bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM)) {
        std::vector<SplitQueue*> qs;
        for (auto& q : queues) qs.push_back(q->ptr());
        auto r = dev.activate(virtio::bit(VIRTIO_F_VERSION_1) | features, qs, irq);
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }
    DriverQueue& q(uint16_t i) { return *queues.at(i); }

    uint32_t config_le32(uint32_t offset) {
        uint8_t b[4] = {0xaa, 0xaa, 0xaa, 0xaa};
        dev.read_config(offset, b);
        return b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24;
    }
    void write_actual(uint32_t pages) {
        auto b = le32s({pages});
        dev.write_config(4, b);
    }
    // Sends one chain of PFNs on queue `qi` and expects it back with length 0.
    void send_pfns(uint16_t qi, const std::vector<uint32_t>& pfns) {
        q(qi).add_out(le32s(pfns));
        dev.queue_notify(qi);
        auto used = q(qi).collect_used();
        ASSERT_EQ(used.size(), 1u);
        EXPECT_EQ(used[0].len, 0u);
    }

    FakeGuest g{kRam};
    std::vector<Released> released;
    bool release_ok = true;
    VirtioBalloon dev;
    std::vector<std::unique_ptr<DriverQueue>> queues;
    FakeInterrupt irq;
};

TEST_F(VirtioBalloonTest, IdentityAndFeatures) {
    EXPECT_EQ(dev.device_type(), VIRTIO_ID_BALLOON);
    EXPECT_EQ(dev.device_features(), virtio::bit(VIRTIO_BALLOON_F_STATS_VQ));
    EXPECT_EQ(virtio::bit(VIRTIO_BALLOON_F_STATS_VQ), 1ull << 1);
    EXPECT_EQ(virtio::bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM), 1ull << 2);
    EXPECT_EQ(dev.device_features() & virtio::bit(VIRTIO_BALLOON_F_MUST_TELL_HOST), 0u);
    EXPECT_EQ(dev.num_queues(), 3);
    EXPECT_EQ(dev.queue_max_size(0), B::kQueueSize);
    EXPECT_EQ(dev.config_size(), 8u);
    EXPECT_EQ(config_le32(0), 0u);
    EXPECT_EQ(config_le32(4), 0u);
}

TEST_F(VirtioBalloonTest, ActivateValidates) {
    std::vector<SplitQueue*> two{q(0).ptr(), q(1).ptr()};
    EXPECT_FALSE(dev.activate(virtio::bit(VIRTIO_BALLOON_F_STATS_VQ), two, irq).has_value());
    std::vector<SplitQueue*> no_stats{q(0).ptr(), q(1).ptr(), nullptr};
    EXPECT_FALSE(dev.activate(virtio::bit(VIRTIO_BALLOON_F_STATS_VQ), no_stats, irq).has_value());
    // Without STATS_VQ the third queue is not needed.
    EXPECT_TRUE(dev.activate(0, no_stats, irq).has_value());
    EXPECT_FALSE(dev.request_stats());
}

TEST_F(VirtioBalloonTest, TargetInConfigAndConfigInterrupt) {
    // Before activation the target is only stored: the driver reads it when it starts.
    EXPECT_EQ(dev.set_target_bytes(8 << 12), 8u << 12);
    EXPECT_EQ(irq.config_signals(), 0);
    EXPECT_EQ(config_le32(0), 8u);

    activate();
    EXPECT_EQ(dev.set_target_bytes(64 << 12), 64u << 12);
    EXPECT_EQ(irq.config_signals(), 1);
    EXPECT_EQ(config_le32(0), 64u);
    EXPECT_EQ(dev.target_bytes(), 64u << 12);

    // Byte-wise reads see the same little-endian field.
    dev.set_target_bytes(0x100ull << 12);  // all of the 1 MiB
    uint8_t b = 0xaa;
    dev.read_config(0, std::span<uint8_t>(&b, 1));
    EXPECT_EQ(b, 0x00);
    dev.read_config(1, std::span<uint8_t>(&b, 1));
    EXPECT_EQ(b, 0x01);
    EXPECT_EQ(irq.config_signals(), 2);

    // Partial pages round up; zero deflates completely.
    EXPECT_EQ(dev.set_target_bytes(5000), 2u << 12);
    EXPECT_EQ(config_le32(0), 2u);
    EXPECT_EQ(dev.set_target_bytes(0), 0u);
    EXPECT_EQ(config_le32(0), 0u);
}

TEST_F(VirtioBalloonTest, TargetAboveRamIsCapped) {
    EXPECT_EQ(dev.set_target_bytes(kRam + 1), kRam);
    EXPECT_EQ(config_le32(0), kRam >> 12);
    EXPECT_EQ(dev.set_target_bytes(UINT64_MAX), kRam);
    EXPECT_EQ(dev.target_bytes(), kRam);
    EXPECT_EQ(config_le32(0), kRam >> 12);

    // num_pages is a le32: a huge guest still gets a representable target.
    GuestMemory none;
    VirtioBalloon big(none, 1ull << 50, [](uint64_t, std::span<uint8_t>) { return true; });
    EXPECT_EQ(big.set_target_bytes(UINT64_MAX), uint64_t{UINT32_MAX} << 12);
}

TEST_F(VirtioBalloonTest, DriverWritesActual) {
    activate();
    write_actual(17);
    EXPECT_EQ(config_le32(4), 17u);
    EXPECT_EQ(dev.actual_bytes(), 17u << 12);

    // Only aligned 32-bit writes of `actual` count.
    uint8_t two[2] = {5, 0};
    dev.write_config(4, two);
    dev.write_config(6, two);
    auto four = le32s({99});
    dev.write_config(0, four);  // num_pages is the device's
    dev.write_config(2, four);  // straddles both fields
    uint8_t eight[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    dev.write_config(0, eight);
    EXPECT_EQ(config_le32(4), 17u);
    EXPECT_EQ(config_le32(0), 0u);
    EXPECT_EQ(dev.actual_bytes(), 17u << 12);

    // A driver claiming more than guest RAM is not believed.
    write_actual(UINT32_MAX);
    EXPECT_EQ(config_le32(4), UINT32_MAX);
    EXPECT_EQ(dev.actual_bytes(), kRam);
}

TEST_F(VirtioBalloonTest, InflateReleasesValidPages) {
    activate();
    const uint32_t a = kEndPfn - 8;
    send_pfns(B::kInflateQueue, {a, a + 1, a + 2, kEndPfn - 1, a + 4});
    // Contiguous pages go to the release function as one run.
    ASSERT_EQ(released.size(), 3u);
    EXPECT_EQ(released[0].gpa, uint64_t{a} << 12);
    EXPECT_EQ(released[0].len, 3u * 4096);
    EXPECT_EQ(released[0].host, g.host(uint64_t{a} << 12));
    EXPECT_EQ(released[1].gpa, uint64_t{kEndPfn - 1} << 12);
    EXPECT_EQ(released[1].len, 4096u);
    EXPECT_EQ(released[1].host, g.host(uint64_t{kEndPfn - 1} << 12));
    EXPECT_EQ(released[2].gpa, uint64_t{a + 4} << 12);
    EXPECT_EQ(released[2].len, 4096u);
    EXPECT_EQ(irq.signals_for(B::kInflateQueue), 1u);

    auto c = dev.balloon_counters();
    EXPECT_EQ(c.pages_inflated, 5u);
    EXPECT_EQ(c.pages_deflated, 0u);
    EXPECT_EQ(c.invalid_pfns, 0u);
    EXPECT_EQ(c.requests, 1u);
    EXPECT_EQ(c.bad_requests, 0u);
    EXPECT_EQ(c.release_failures, 0u);
    EXPECT_EQ(irq.needs_reset(), 0);
}

TEST_F(VirtioBalloonTest, InflateSkipsInvalidPfns) {
    activate();
    const uint32_t ok = kEndPfn - 1;
    send_pfns(B::kInflateQueue,
              {0, kFirstPfn - 1, ok, kEndPfn, kEndPfn + 1000, 0x7fffffff, UINT32_MAX});
    ASSERT_EQ(released.size(), 1u);
    EXPECT_EQ(released[0].gpa, uint64_t{ok} << 12);
    auto c = dev.balloon_counters();
    EXPECT_EQ(c.pages_inflated, 1u);
    EXPECT_EQ(c.invalid_pfns, 6u);
    EXPECT_EQ(c.requests, 1u);
    EXPECT_EQ(c.bad_requests, 1u);
    EXPECT_EQ(irq.needs_reset(), 0);

    // The device keeps serving afterwards.
    send_pfns(B::kInflateQueue, {ok - 1});
    EXPECT_EQ(dev.balloon_counters().pages_inflated, 2u);
    EXPECT_EQ(dev.balloon_counters().bad_requests, 1u);
}

TEST(VirtioBalloonMemory, PageMustLieEntirelyInRam) {
    // RAM ending half way into a page: that page cannot be ballooned.
    FakeGuest g(0x10000 + 0x800, 0x10000);
    std::vector<uint64_t> released;
    VirtioBalloon dev(g.mem(), g.mem().total_size(), [&](uint64_t gpa, std::span<uint8_t> h) {
        released.push_back(gpa);
        EXPECT_EQ(h.size(), 4096u);
        return true;
    });
    DriverQueue q0(g, kQSize, B::kQueueSize), q1(g, kQSize, B::kQueueSize);
    SplitQueue* qs[] = {q0.ptr(), q1.ptr(), nullptr};
    FakeInterrupt irq;
    ASSERT_TRUE(dev.activate(0, qs, irq).has_value());
    q0.add_out(le32s({0x1f, 0x20, 0x21}));
    dev.queue_notify(0);
    EXPECT_EQ(q0.collect_used().size(), 1u);
    EXPECT_EQ(released, std::vector<uint64_t>{0x1f000});
    EXPECT_EQ(dev.balloon_counters().invalid_pfns, 2u);
    dev.reset();
}

TEST_F(VirtioBalloonTest, OddLengthReadableBuffers) {
    activate();
    const uint32_t a = kEndPfn - 4;
    // Three PFNs (no two neighbours) split across buffers of 3, 5 and 4 bytes.
    auto bytes = le32s({a + 2, a, kEndPfn - 1});
    uint64_t buf = g.alloc(bytes.size());
    g.write(buf, bytes);
    q(0).add_chain({{buf, 3, false}, {buf + 3, 5, false}, {buf + 8, 4, false}});
    dev.queue_notify(0);
    ASSERT_EQ(q(0).collect_used().size(), 1u);
    ASSERT_EQ(released.size(), 3u);
    EXPECT_EQ(released[0].gpa, uint64_t{a + 2} << 12);
    EXPECT_EQ(released[1].gpa, uint64_t{a} << 12);
    EXPECT_EQ(released[2].gpa, uint64_t{kEndPfn - 1} << 12);
    EXPECT_EQ(dev.balloon_counters().bad_requests, 0u);

    // A trailing partial PFN is ignored and makes the request bad; the
    // whole PFNs before it are still served.
    released.clear();
    auto more = le32s({a + 1, a + 3});
    more.resize(7);
    q(0).add_out(more);
    dev.queue_notify(0);
    ASSERT_EQ(q(0).collect_used().size(), 1u);
    ASSERT_EQ(released.size(), 1u);
    EXPECT_EQ(released[0].gpa, uint64_t{a + 1} << 12);
    auto c = dev.balloon_counters();
    EXPECT_EQ(c.pages_inflated, 4u);
    EXPECT_EQ(c.bad_requests, 1u);
    EXPECT_EQ(c.invalid_pfns, 0u);

    // A single stray byte: nothing to do, but still answered.
    q(0).add_out(std::vector<uint8_t>{0x42});
    dev.queue_notify(0);
    EXPECT_EQ(q(0).collect_used().size(), 1u);
    EXPECT_EQ(dev.balloon_counters().bad_requests, 2u);
    EXPECT_EQ(irq.needs_reset(), 0);
}

TEST_F(VirtioBalloonTest, PfnsPerRequestAreCapped) {
    activate();
    std::vector<uint32_t> pfns(B::kMaxPfnsPerRequest + 10, kEndPfn - 1);
    send_pfns(B::kInflateQueue, pfns);
    auto c = dev.balloon_counters();
    EXPECT_EQ(c.pages_inflated, B::kMaxPfnsPerRequest);
    EXPECT_EQ(c.bad_requests, 1u);
    EXPECT_EQ(released.size(), B::kMaxPfnsPerRequest);
}

TEST_F(VirtioBalloonTest, WritableBuffersMakeARequestBad) {
    activate();
    auto bytes = le32s({kEndPfn - 1});
    uint64_t buf = g.alloc(bytes.size());
    g.write(buf, bytes);
    q(0).add_chain({{buf, 4, false}, {g.alloc(16), 16, true}});
    dev.queue_notify(0);
    auto used = q(0).collect_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].len, 0u);
    EXPECT_EQ(released.size(), 1u);
    EXPECT_EQ(dev.balloon_counters().bad_requests, 1u);
}

TEST_F(VirtioBalloonTest, ReleaseFailuresAreCounted) {
    activate();
    release_ok = false;
    send_pfns(B::kInflateQueue, {kEndPfn - 3, kEndPfn - 1});
    auto c = dev.balloon_counters();
    EXPECT_EQ(c.release_failures, 2u);
    EXPECT_EQ(c.pages_inflated, 2u);
    EXPECT_EQ(irq.needs_reset(), 0);
}

TEST_F(VirtioBalloonTest, DeflateOnlyCounts) {
    activate();
    send_pfns(B::kInflateQueue, {kEndPfn - 2, kEndPfn - 1});
    released.clear();
    send_pfns(B::kDeflateQueue, {kEndPfn - 2, kEndPfn - 1, UINT32_MAX});
    EXPECT_TRUE(released.empty());
    auto c = dev.balloon_counters();
    EXPECT_EQ(c.pages_inflated, 2u);
    EXPECT_EQ(c.pages_deflated, 2u);
    EXPECT_EQ(c.invalid_pfns, 1u);
    EXPECT_EQ(c.requests, 2u);
    EXPECT_EQ(c.bad_requests, 1u);
    EXPECT_EQ(irq.signals_for(B::kDeflateQueue), 1u);
}

TEST_F(VirtioBalloonTest, NotifyBeforeActivationIgnored) {
    q(0).add_out(le32s({kEndPfn - 1}));
    q(2).add_out(stat(VIRTIO_BALLOON_S_MEMFREE, 1));
    for (uint16_t i = 0; i < 3; ++i) dev.queue_notify(i);
    EXPECT_EQ(q(0).used_idx(), 0);
    EXPECT_TRUE(released.empty());
    EXPECT_EQ(dev.balloon_counters().requests, 0u);
    EXPECT_EQ(dev.stats().updates, 0u);
    EXPECT_FALSE(dev.request_stats());
}

TEST_F(VirtioBalloonTest, StatsRoundTrip) {
    activate();
    EXPECT_FALSE(dev.request_stats());  // no buffer posted yet

    // The driver's initial buffer: known tags, an unknown one and a
    // truncated last entry.
    auto first = cat({stat(VIRTIO_BALLOON_S_SWAP_IN, 5), stat(VIRTIO_BALLOON_S_MEMFREE, 1 << 20),
                      stat(42, 7), stat(VIRTIO_BALLOON_S_AVAIL, 0x123456789abull),
                      std::vector<uint8_t>{0x07, 0x00, 0x01, 0x02, 0x03}});
    const uint16_t head = q(2).add_out(first);
    dev.queue_notify(B::kStatsQueue);
    // The device holds the buffer until the host wants fresh stats.
    EXPECT_EQ(q(2).used_idx(), 0);
    EXPECT_EQ(irq.signals_for(B::kStatsQueue), 0u);
    auto s = dev.stats();
    EXPECT_EQ(s.updates, 1u);
    EXPECT_EQ(s.get(VIRTIO_BALLOON_S_SWAP_IN), 5u);
    EXPECT_EQ(s.get(VIRTIO_BALLOON_S_MEMFREE), 1u << 20);
    EXPECT_EQ(s.get(VIRTIO_BALLOON_S_AVAIL), 0x123456789abull);
    EXPECT_FALSE(s.get(VIRTIO_BALLOON_S_CACHES).has_value());  // only partly sent
    EXPECT_FALSE(s.get(42).has_value());
    EXPECT_EQ(dev.balloon_counters().bad_requests, 1u);  // the truncated entry
    EXPECT_EQ(BalloonStats::tag_name(VIRTIO_BALLOON_S_MEMFREE), "free_memory");
    EXPECT_EQ(BalloonStats::tag_name(42), "");

    EXPECT_TRUE(dev.request_stats());
    auto used = q(2).collect_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].head, head);
    EXPECT_EQ(used[0].len, 0u);
    EXPECT_EQ(irq.signals_for(B::kStatsQueue), 1u);
    EXPECT_FALSE(dev.request_stats());  // nothing held until the driver refills it

    // The refill replaces the previous values.
    q(2).add_out(cat({stat(VIRTIO_BALLOON_S_MEMFREE, 4096), stat(VIRTIO_BALLOON_S_CACHES, 9)}));
    dev.queue_notify(B::kStatsQueue);
    s = dev.stats();
    EXPECT_EQ(s.updates, 2u);
    EXPECT_EQ(s.get(VIRTIO_BALLOON_S_MEMFREE), 4096u);
    EXPECT_EQ(s.get(VIRTIO_BALLOON_S_CACHES), 9u);
    EXPECT_FALSE(s.get(VIRTIO_BALLOON_S_SWAP_IN).has_value());
    EXPECT_EQ(dev.balloon_counters().bad_requests, 1u);
    EXPECT_TRUE(dev.request_stats());
    EXPECT_EQ(q(2).collect_used().size(), 1u);
}

TEST_F(VirtioBalloonTest, SecondStatsBufferReturnsTheFirst) {
    activate();
    const uint16_t h1 = q(2).add_out(stat(VIRTIO_BALLOON_S_SWAP_OUT, 1));
    dev.queue_notify(B::kStatsQueue);
    const uint16_t h2 = q(2).add_out(stat(VIRTIO_BALLOON_S_SWAP_OUT, 2));
    dev.queue_notify(B::kStatsQueue);
    auto used = q(2).collect_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].head, h1);
    EXPECT_EQ(dev.stats().get(VIRTIO_BALLOON_S_SWAP_OUT), 2u);
    EXPECT_TRUE(dev.request_stats());
    used = q(2).collect_used();
    ASSERT_EQ(used.size(), 1u);
    EXPECT_EQ(used[0].head, h2);
}

TEST_F(VirtioBalloonTest, OversizedStatsBuffer) {
    activate();
    std::vector<uint8_t> big;
    for (int i = 0; i < 100; ++i) {
        auto e = stat(VIRTIO_BALLOON_S_MINFLT, static_cast<uint64_t>(i));
        big.insert(big.end(), e.begin(), e.end());
    }
    q(2).add_out(big);
    dev.queue_notify(B::kStatsQueue);
    // Only the first kMaxStatsBytes are parsed: the last entry seen wins.
    EXPECT_EQ(dev.stats().get(VIRTIO_BALLOON_S_MINFLT), B::kMaxStatsBytes / 10 - 1);
    EXPECT_EQ(dev.balloon_counters().bad_requests, 1u);
    EXPECT_TRUE(dev.request_stats());
}

TEST_F(VirtioBalloonTest, StatsQueueIgnoredWithoutFeature) {
    activate(virtio::bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
    q(2).add_out(stat(VIRTIO_BALLOON_S_MEMFREE, 1));
    dev.queue_notify(B::kStatsQueue);
    EXPECT_EQ(dev.stats().updates, 0u);
    EXPECT_FALSE(dev.request_stats());
    EXPECT_EQ(q(2).used_idx(), 0);
}

TEST_F(VirtioBalloonTest, ResetDropsEverything) {
    activate();
    dev.set_target_bytes(32 << 12);
    write_actual(32);
    q(2).add_out(stat(VIRTIO_BALLOON_S_MEMFREE, 1));
    dev.queue_notify(B::kStatsQueue);
    irq.clear();

    dev.reset();
    EXPECT_FALSE(dev.request_stats());  // the held buffer is forgotten, not pushed
    EXPECT_EQ(q(2).used_idx(), 0);
    EXPECT_EQ(dev.actual_bytes(), 0u);
    EXPECT_EQ(config_le32(4), 0u);
    EXPECT_EQ(dev.target_bytes(), 32u << 12);  // the host's wish stays
    EXPECT_EQ(config_le32(0), 32u);
    dev.set_target_bytes(16 << 12);
    EXPECT_EQ(irq.config_signals(), 0);  // nobody to tell

    q(0).add_out(le32s({kEndPfn - 1}));
    dev.queue_notify(B::kInflateQueue);
    EXPECT_EQ(q(0).used_idx(), 0);
    EXPECT_TRUE(released.empty());
    EXPECT_TRUE(irq.queue_signals().empty());

    // The driver starts over on fresh rings.
    for (auto& dq : queues) dq->configure();
    activate();
    send_pfns(B::kInflateQueue, {kEndPfn - 1});
    EXPECT_EQ(released.size(), 1u);
    q(2).add_out(stat(VIRTIO_BALLOON_S_MEMFREE, 2));
    dev.queue_notify(B::kStatsQueue);
    EXPECT_EQ(dev.stats().get(VIRTIO_BALLOON_S_MEMFREE), 2u);
    EXPECT_TRUE(dev.request_stats());
}

TEST_F(VirtioBalloonTest, BrokenRingNeedsReset) {
    activate();
    // A chain pointing outside guest memory.
    q(0).write_desc(0, 0xdead0000000ull, 4, 0);
    q(0).publish(0);
    dev.queue_notify(B::kInflateQueue);
    EXPECT_EQ(irq.needs_reset(), 1);
    EXPECT_TRUE(released.empty());
    // Nothing more is served until a reset.
    q(1).add_out(le32s({kEndPfn - 1}));
    dev.queue_notify(B::kDeflateQueue);
    EXPECT_EQ(q(1).used_idx(), 0);
    EXPECT_EQ(dev.balloon_counters().pages_deflated, 0u);
}

TEST(VirtioBalloonRelease, MadviseFreesWholePagesOnly) {
    auto m = Mmap::anonymous(4 * 4096);
    ASSERT_TRUE(m.has_value()) << m.error().message;
    std::memset(m->data(), 0x5a, m->size());
    uint8_t* p = m->data();
    EXPECT_TRUE(B::madvise_release(0, std::span<uint8_t>(p + 4096, 2 * 4096)));
    EXPECT_EQ(p[4095], 0x5a);
    EXPECT_EQ(p[4096], 0);
    EXPECT_EQ(p[3 * 4096 - 1], 0);
    EXPECT_EQ(p[3 * 4096], 0x5a);
    // A range covering no whole host page leaves memory alone.
    EXPECT_TRUE(B::madvise_release(0, std::span<uint8_t>(p + 100, 4096)));
    EXPECT_EQ(p[100], 0x5a);
    EXPECT_EQ(p[4095], 0x5a);
}

TEST(VirtioBalloonRelease, DefaultReleaseOnAnonymousRam) {
    // Rings and buffers live in heap-backed fake memory; the balloon's RAM
    // also has an anonymous mapping at 16 MiB that the default release frees.
    FakeGuest g(1 << 20);
    auto m = Mmap::anonymous(8 * 4096);
    ASSERT_TRUE(m.has_value()) << m.error().message;
    std::memset(m->data(), 0x5a, m->size());
    constexpr uint64_t kAnonGpa = 16 << 20;
    GuestMemory mem(g.mem().regions());
    mem.add_region(MemoryRegion{kAnonGpa, m->size(), m->data()});
    VirtioBalloon dev(mem, mem.total_size());

    DriverQueue q0(g, kQSize, B::kQueueSize), q1(g, kQSize, B::kQueueSize);
    SplitQueue* qs[] = {q0.ptr(), q1.ptr(), nullptr};
    FakeInterrupt irq;
    ASSERT_TRUE(dev.activate(virtio::bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM), qs, irq).has_value());
    const uint32_t pfn = kAnonGpa >> 12;
    q0.add_out(le32s({pfn + 1, pfn + 2, pfn + 5, pfn + 8}));  // pfn + 8 is past the end
    dev.queue_notify(0);
    EXPECT_EQ(q0.collect_used().size(), 1u);
    for (uint32_t i = 0; i < 8; ++i) {
        const uint8_t want = (i == 1 || i == 2 || i == 5) ? 0 : 0x5a;
        EXPECT_EQ(m->data()[i * 4096], want) << "page " << i;
        EXPECT_EQ(m->data()[i * 4096 + 4095], want) << "page " << i;
    }
    auto c = dev.balloon_counters();
    EXPECT_EQ(c.pages_inflated, 3u);
    EXPECT_EQ(c.invalid_pfns, 1u);
    EXPECT_EQ(c.release_failures, 0u);
    dev.reset();
}

}  // namespace
}  // namespace kvmsandbox
