#include "virtio/transport/virtqueue.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace kvmsandbox {
namespace {

constexpr uint64_t kMemBase = 0x10000;  // not 0, so base handling is exercised
constexpr uint64_t kMemSize = 1 << 20;
constexpr uint64_t kDesc = kMemBase + 0x1000;
constexpr uint64_t kAvail = kMemBase + 0x3000;
constexpr uint64_t kUsed = kMemBase + 0x4000;
constexpr uint64_t kIndirect = kMemBase + 0x6000;
constexpr uint64_t kData = kMemBase + 0x10000;

using namespace virtq;

// Fake guest memory plus a scripted driver that writes rings the way a
// guest would (or the way a malicious one would).
class VirtqueueTest : public ::testing::Test {
  protected:
    VirtqueueTest() : buf(kMemSize), mem({MemoryRegion{kMemBase, kMemSize, buf.data()}}) {}

    void configure(uint16_t size, bool event_idx = false) {
        qsize = size;
        ASSERT_TRUE(q.configure(size, kDesc, kAvail, kUsed, event_idx).has_value());
    }
    void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags = 0, uint16_t next = 0,
              uint64_t table = kDesc) {
        vring_desc d{addr, len, flags, next};
        ASSERT_TRUE(mem.write_obj(table + 16ull * i, d));
    }
    void publish(uint16_t head) {
        ASSERT_TRUE(mem.write_obj<uint16_t>(kAvail + 4 + 2ull * (avail_idx % qsize), head));
        ++avail_idx;
        ASSERT_TRUE(mem.write_obj<uint16_t>(kAvail + 2, avail_idx));
    }
    void set_avail_idx(uint16_t v) { ASSERT_TRUE(mem.write_obj<uint16_t>(kAvail + 2, v)); }
    uint16_t used_idx() { return *mem.read_obj<uint16_t>(kUsed + 2); }
    std::pair<uint32_t, uint32_t> used_elem(uint16_t i) {
        uint64_t a = kUsed + 4 + 8ull * (i % qsize);
        return {*mem.read_obj<uint32_t>(a), *mem.read_obj<uint32_t>(a + 4)};
    }
    uint16_t avail_event() { return *mem.read_obj<uint16_t>(kUsed + 4 + 8ull * qsize); }
    void set_used_event(uint16_t v) {
        ASSERT_TRUE(mem.write_obj<uint16_t>(kAvail + 4 + 2ull * qsize, v));
    }
    uint8_t* host(uint64_t gpa) { return buf.data() + (gpa - kMemBase); }

    // Pops and expects a broken-ring error.
    void expect_broken() {
        auto r = q.pop();
        EXPECT_FALSE(r.has_value());
        EXPECT_TRUE(q.broken());
        EXPECT_EQ(q.errors(), 1u);
        // Stays broken; nothing is handed out afterwards.
        EXPECT_FALSE(q.pop().has_value());
    }

    std::vector<uint8_t> buf;
    GuestMemory mem;
    SplitQueue q{mem, 256};
    uint16_t qsize = 0;
    uint16_t avail_idx = 0;
};

TEST_F(VirtqueueTest, ConfigureValidates) {
    SplitQueue small(mem, 16);
    EXPECT_FALSE(small.configure(0, kDesc, kAvail, kUsed, false).has_value());
    EXPECT_FALSE(small.configure(12, kDesc, kAvail, kUsed, false).has_value());  // not 2^n
    EXPECT_FALSE(small.configure(32, kDesc, kAvail, kUsed, false).has_value());  // > max
    EXPECT_FALSE(q.configure(65536, kDesc, kAvail, kUsed, false).has_value());
    EXPECT_FALSE(small.configure(16, kDesc + 8, kAvail, kUsed, false).has_value());  // align 16
    EXPECT_FALSE(small.configure(16, kDesc, kAvail + 1, kUsed, false).has_value());  // align 2
    EXPECT_FALSE(small.configure(16, kDesc, kAvail, kUsed + 2, false).has_value());  // align 4
    // Rings not (entirely) inside guest memory.
    EXPECT_FALSE(small.configure(16, 0x0, kAvail, kUsed, false).has_value());
    EXPECT_FALSE(small.configure(16, kDesc, kMemBase + kMemSize - 8, kUsed, false).has_value());
    EXPECT_FALSE(small.configure(16, kDesc, kAvail, kMemBase + kMemSize - 16, false).has_value());
    EXPECT_FALSE(small.configure(16, kDesc, kAvail, 0xfffffffffffffff0ull, false).has_value());
    EXPECT_FALSE(small.ready());
    EXPECT_TRUE(small.configure(16, kDesc, kAvail, kUsed, false).has_value());
    EXPECT_TRUE(small.ready());
}

TEST_F(VirtqueueTest, EmptyQueuePopsNothing) {
    configure(8);
    auto r = q.pop();
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->has_value());
}

TEST_F(VirtqueueTest, SimpleChain) {
    configure(8);
    std::memcpy(host(kData), "hello", 5);
    desc(3, kData, 5);
    publish(3);
    auto r = q.pop();
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->has_value());
    const VirtqChain& c = **r;
    EXPECT_EQ(c.head, 3);
    ASSERT_EQ(c.readable.size(), 1u);
    EXPECT_EQ(c.readable[0].data(), host(kData));
    EXPECT_EQ(c.readable[0].size(), 5u);
    EXPECT_EQ(c.readable_len, 5u);
    EXPECT_TRUE(c.writable.empty());
    EXPECT_EQ(c.writable_len, 0u);
    EXPECT_FALSE(q.pop()->has_value());

    ASSERT_TRUE(q.push_used(3, 0).has_value());
    EXPECT_EQ(used_idx(), 1);
    EXPECT_EQ(used_elem(0), std::make_pair(3u, 0u));
    EXPECT_EQ(q.chains_popped(), 1u);
    EXPECT_EQ(q.errors(), 0u);
}

TEST_F(VirtqueueTest, MultiDescriptorChain) {
    configure(8);
    desc(0, kData, 10, VRING_DESC_F_NEXT, 5);
    desc(5, kData + 0x100, 20, VRING_DESC_F_NEXT, 2);
    desc(2, kData + 0x200, 30, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 7);
    desc(7, kData + 0x300, 40, VRING_DESC_F_WRITE);
    publish(0);
    auto r = q.pop();
    ASSERT_TRUE(r.has_value() && r->has_value());
    const VirtqChain& c = **r;
    ASSERT_EQ(c.readable.size(), 2u);
    ASSERT_EQ(c.writable.size(), 2u);
    EXPECT_EQ(c.readable[1].data(), host(kData + 0x100));
    EXPECT_EQ(c.writable[0].data(), host(kData + 0x200));
    EXPECT_EQ(c.writable[1].size(), 40u);
    EXPECT_EQ(c.readable_len, 30u);
    EXPECT_EQ(c.writable_len, 70u);
    ASSERT_TRUE(q.push_used(0, 70).has_value());
    EXPECT_EQ(used_elem(0), std::make_pair(0u, 70u));
}

TEST_F(VirtqueueTest, IndirectChain) {
    configure(8);
    desc(0, kData, 8, VRING_DESC_F_NEXT, 1, kIndirect);
    desc(1, kData + 0x100, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2, kIndirect);
    desc(2, kData + 0x200, 32, VRING_DESC_F_WRITE, 0, kIndirect);
    // A chained direct descriptor first, then the indirect one.
    desc(4, kData + 0x400, 4, VRING_DESC_F_NEXT, 6);
    desc(6, kIndirect, 3 * 16, VRING_DESC_F_INDIRECT);
    publish(4);
    auto r = q.pop();
    ASSERT_TRUE(r.has_value() && r->has_value());
    const VirtqChain& c = **r;
    EXPECT_EQ(c.head, 4);
    ASSERT_EQ(c.readable.size(), 2u);
    ASSERT_EQ(c.writable.size(), 2u);
    EXPECT_EQ(c.readable_len, 12u);
    EXPECT_EQ(c.writable_len, 48u);
    EXPECT_EQ(c.writable[1].data(), host(kData + 0x200));
}

TEST_F(VirtqueueTest, IndexWrapAroundPast65535) {
    configure(4);
    // 70000 requests through a 4-entry ring: avail/used indices wrap at
    // 65536 and ring slots wrap every 4 entries.
    for (uint32_t i = 0; i < 70000; ++i) {
        const uint16_t head = static_cast<uint16_t>(i % 4);
        desc(head, kData + 64 * head, 8, VRING_DESC_F_WRITE);
        publish(head);
        auto r = q.pop();
        ASSERT_TRUE(r.has_value()) << i;
        ASSERT_TRUE(r->has_value()) << i;
        ASSERT_EQ((*r)->head, head);
        ASSERT_TRUE(q.push_used(head, i & 0xff).has_value());
        ASSERT_EQ(used_idx(), static_cast<uint16_t>(i + 1));
        ASSERT_EQ(used_elem(static_cast<uint16_t>(i)),
                  (std::pair<uint32_t, uint32_t>(head, i & 0xff)));
    }
    EXPECT_EQ(q.next_avail(), static_cast<uint16_t>(70000));
    EXPECT_EQ(q.chains_popped(), 70000u);
}

TEST_F(VirtqueueTest, SeveralPendingAcrossRingEnd) {
    configure(4);
    // Start near the end of the index space with 3 requests in flight.
    for (int round = 0; round < 3; ++round) {
        for (uint16_t h = 0; h < 3; ++h) {
            desc(h, kData, 1);
            publish(h);
        }
        for (uint16_t h = 0; h < 3; ++h) {
            auto r = q.pop();
            ASSERT_TRUE(r.has_value() && r->has_value());
            EXPECT_EQ((*r)->head, h);
        }
        EXPECT_FALSE(q.pop()->has_value());
        for (uint16_t h = 0; h < 3; ++h) ASSERT_TRUE(q.push_used(h, 0).has_value());
    }
    EXPECT_EQ(used_idx(), 9);
}

TEST_F(VirtqueueTest, LoopInNextPointersRejected) {
    configure(8);
    desc(0, kData, 8, VRING_DESC_F_NEXT, 1);
    desc(1, kData, 8, VRING_DESC_F_NEXT, 0);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, SelfLoopRejected) {
    configure(8);
    desc(2, kData, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    publish(2);
    expect_broken();
}

TEST_F(VirtqueueTest, LoopInIndirectTableRejected) {
    configure(8);
    desc(0, kData, 8, VRING_DESC_F_NEXT, 1, kIndirect);
    desc(1, kData, 8, VRING_DESC_F_NEXT, 0, kIndirect);
    desc(0, kIndirect, 2 * 16, VRING_DESC_F_INDIRECT);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, HeadOutOfRangeRejected) {
    configure(8);
    desc(0, kData, 8);
    publish(8);
    expect_broken();
}

TEST_F(VirtqueueTest, NextOutOfRangeRejected) {
    configure(8);
    desc(0, kData, 8, VRING_DESC_F_NEXT, 8);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, IndirectNextOutOfRangeRejected) {
    configure(8);
    desc(0, kData, 8, VRING_DESC_F_NEXT, 2, kIndirect);  // table has 2 entries
    desc(0, kIndirect, 2 * 16, VRING_DESC_F_INDIRECT);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, BufferOutsideGuestMemoryRejected) {
    configure(8);
    desc(0, kMemBase + kMemSize - 4, 8);  // straddles the end
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, BufferBelowGuestMemoryRejected) {
    configure(8);
    desc(0, 0x100, 8);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, BufferAddressOverflowRejected) {
    configure(8);
    desc(0, 0xfffffffffffffff0ull, 0x20);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, ZeroLengthBufferRejected) {
    configure(8);
    desc(0, kData, 0);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, IndirectTableOutsideMemoryRejected) {
    configure(8);
    desc(0, kMemBase + kMemSize - 16, 32, VRING_DESC_F_INDIRECT);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, IndirectTableBadLengthRejected) {
    configure(8);
    desc(0, kIndirect, 24, VRING_DESC_F_INDIRECT);  // not a multiple of 16
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, IndirectTableLongerThanQueueRejected) {
    configure(4);
    for (uint16_t i = 0; i < 5; ++i)
        desc(i, kData, 1, i < 4 ? VRING_DESC_F_NEXT : 0, static_cast<uint16_t>(i + 1), kIndirect);
    desc(0, kIndirect, 5 * 16, VRING_DESC_F_INDIRECT);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, ChainLongerThanQueueRejected) {
    // 3 direct buffers + an indirect table of 2: 5 buffers in a queue of 4.
    configure(4);
    desc(0, kData, 1, VRING_DESC_F_NEXT, 1);
    desc(1, kData, 1, VRING_DESC_F_NEXT, 2);
    desc(2, kData, 1, VRING_DESC_F_NEXT, 3);
    desc(3, kIndirect, 2 * 16, VRING_DESC_F_INDIRECT);
    desc(0, kData, 1, VRING_DESC_F_NEXT, 1, kIndirect);
    desc(1, kData, 1, 0, 0, kIndirect);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, NestedIndirectRejected) {
    configure(8);
    desc(0, kIndirect + 0x100, 16, VRING_DESC_F_INDIRECT, 0, kIndirect);
    desc(0, kData, 8, 0, 0, kIndirect + 0x100);
    desc(0, kIndirect, 16, VRING_DESC_F_INDIRECT);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, IndirectWithNextRejected) {
    configure(8);
    desc(0, kData, 8, 0, 0, kIndirect);
    desc(0, kIndirect, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    desc(1, kData, 8);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, WritableBeforeReadableRejected) {
    configure(8);
    desc(0, kData, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    desc(1, kData + 8, 8);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, WritableBeforeReadableAcrossIndirectRejected) {
    configure(8);
    desc(0, kData, 8, VRING_DESC_F_WRITE, 0, kIndirect);
    desc(0, kData, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    desc(1, kIndirect, 16, VRING_DESC_F_INDIRECT);  // table has a readable after our writable
    desc(0, kData + 8, 8, 0, 0, kIndirect);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, AvailIdxJumpRejected) {
    configure(8);
    desc(0, kData, 8);
    set_avail_idx(9);
    expect_broken();
}

TEST_F(VirtqueueTest, ChainByteCapEnforced) {
    configure(8);
    q.set_max_chain_bytes(100);
    desc(0, kData, 60, VRING_DESC_F_NEXT, 1);
    desc(1, kData, 41, VRING_DESC_F_WRITE);
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, HugeBufferOutsideMemoryRejected) {
    configure(8);
    desc(0, kData, 0xc0000000u, VRING_DESC_F_NEXT, 1);  // outside our 1 MiB memory anyway
    publish(0);
    expect_broken();
}

TEST_F(VirtqueueTest, ResetClearsBroken) {
    configure(8);
    set_avail_idx(100);
    expect_broken();
    configure(8);
    EXPECT_FALSE(q.broken());
    set_avail_idx(0);
    EXPECT_TRUE(q.pop().has_value());
}

TEST_F(VirtqueueTest, PushUsedRejectsHeadNotInFlight) {
    configure(8);
    EXPECT_FALSE(q.push_used(0, 0).has_value());
    EXPECT_TRUE(q.broken());
}

TEST_F(VirtqueueTest, NoInterruptFlagWithoutEventIdx) {
    configure(8);
    desc(0, kData, 8);
    publish(0);
    ASSERT_TRUE(q.pop()->has_value());
    ASSERT_TRUE(q.push_used(0, 0).has_value());
    EXPECT_TRUE(q.needs_interrupt());
    EXPECT_FALSE(q.needs_interrupt());  // nothing new since

    ASSERT_TRUE(mem.write_obj<uint16_t>(kAvail, VRING_AVAIL_F_NO_INTERRUPT));
    publish(0);
    ASSERT_TRUE(q.pop()->has_value());
    ASSERT_TRUE(q.push_used(0, 0).has_value());
    EXPECT_FALSE(q.needs_interrupt());
}

TEST_F(VirtqueueTest, EventIdxSuppressesInterrupts) {
    configure(8, /*event_idx=*/true);
    auto one = [&] {
        desc(0, kData, 8);
        publish(0);
        auto r = q.pop();
        ASSERT_TRUE(r.has_value() && r->has_value());
        ASSERT_TRUE(q.push_used(0, 0).has_value());
    };
    // The device asks to be kicked for the entry after the ones it consumed.
    one();
    EXPECT_EQ(avail_event(), 1);
    EXPECT_TRUE(q.needs_interrupt());  // first one is always signalled

    // Driver wants an interrupt only once used idx passes 3 (used_event = 3).
    set_used_event(3);
    one();  // used idx 2
    EXPECT_FALSE(q.needs_interrupt());
    one();  // used idx 3
    EXPECT_FALSE(q.needs_interrupt());
    one();  // used idx 4: entry 3 was used -> crosses used_event
    EXPECT_TRUE(q.needs_interrupt());
    one();  // used idx 5: used_event 3 already passed
    EXPECT_FALSE(q.needs_interrupt());
    EXPECT_EQ(avail_event(), 5);

    // Two pushes before one check still catch the event in between.
    set_used_event(5);
    one();
    one();
    EXPECT_TRUE(q.needs_interrupt());
}

TEST_F(VirtqueueTest, EventIdxWrapsAround) {
    configure(4, true);
    // Drive indices close to 65535 with the driver's used_event following us.
    for (uint32_t i = 0; i < 65540; ++i) {
        desc(0, kData, 8);
        publish(0);
        ASSERT_TRUE(q.pop()->has_value());
        ASSERT_TRUE(q.push_used(0, 0).has_value());
        // used_event was set to i last round: entry i was just used -> interrupt.
        ASSERT_TRUE(q.needs_interrupt()) << i;
        set_used_event(static_cast<uint16_t>(i + 1));
    }
}

TEST_F(VirtqueueTest, EmptyPopWithEventIdxPublishesAvailEvent) {
    configure(8, true);
    EXPECT_FALSE(q.pop()->has_value());
    EXPECT_EQ(avail_event(), 0);
    q.set_notifications(false);
    desc(0, kData, 8);
    publish(0);
    ASSERT_TRUE(q.pop()->has_value());
    EXPECT_EQ(avail_event(), 0);  // not advanced while disabled
    q.set_notifications(true);
    EXPECT_EQ(avail_event(), 1);
}

TEST_F(VirtqueueTest, NoNotifyFlagWithoutEventIdx) {
    configure(8);
    q.set_notifications(false);
    EXPECT_EQ(*mem.read_obj<uint16_t>(kUsed), VRING_USED_F_NO_NOTIFY);
    q.set_notifications(true);
    EXPECT_EQ(*mem.read_obj<uint16_t>(kUsed), 0);
}

}  // namespace
}  // namespace kvmsandbox
