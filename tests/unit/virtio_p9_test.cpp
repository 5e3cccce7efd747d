#include "virtio/9p/p9_device.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fake_driver.h"
#include "gate.h"
#include "virtio/9p/wire.h"

namespace kvmsandbox {
namespace {

namespace fs = std::filesystem;
using fake::DriverQueue;
using fake::FakeGuest;
using fake::FakeInterrupt;
using fake::Seg;

constexpr uint16_t kQSize = 128;
constexpr uint32_t kRootFid = 1;

std::vector<uint8_t> encode(uint8_t type, uint16_t tag, const std::function<void(p9::Writer&)>& f) {
    std::vector<uint8_t> buf(4096);
    p9::Writer w(buf);
    w.begin(type, tag);
    f(w);
    buf.resize(w.finish());
    return buf;
}

std::vector<uint8_t> tversion(uint16_t tag = p9::kNoTag, uint32_t msize = 65536) {
    return encode(p9::kTversion, tag, [&](p9::Writer& w) {
        w.u32(msize);
        w.str("9P2000.L");
    });
}

// Blocks the pool's only thread until released.
using fake::Gate;

class VirtioP9Test : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/virtio_p9_test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        std::ofstream(dir_ / "hello.txt") << "hello from the host";
        make_device(4, "share0");
    }
    void TearDown() override {
        dev_.reset();
        pool_.reset();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    void make_device(size_t threads, std::string tag) {
        dev_.reset();
        pool_.reset();
        int fd = open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        auto s = p9::P9Server::create(UniqueFd(fd), false, {});
        ASSERT_TRUE(s.has_value()) << s.error().message;
        pool_ = std::make_unique<WorkerPool>(threads);
        dev_ = std::make_unique<VirtioP9>(std::move(tag), std::move(*s), *pool_);
    }
    void activate() {
        SplitQueue* qs[] = {q_.ptr()};
        auto r = dev_->activate(virtio::bit(VIRTIO_F_VERSION_1) | VirtioP9::kFMountTag, qs, irq_);
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }

    // Publishes a request (readable) + response buffer (writable) chain.
    uint16_t submit(std::span<const uint8_t> req, uint32_t resp_len = 8192) {
        uint64_t r = g_.alloc(req.size());
        g_.write(r, req);
        return q_.add_chain(
            {{r, static_cast<uint32_t>(req.size()), false}, {g_.alloc(resp_len), resp_len, true}});
    }
    // Waits for `n` used entries in all and returns the new ones.
    std::vector<fake::Used> wait_used(size_t n) {
        std::vector<fake::Used> got;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
            for (auto& u : q_.collect_used()) got.push_back(std::move(u));
            if (got.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        EXPECT_EQ(got.size(), n);
        return got;
    }
    struct Reply {
        uint8_t type = 0;
        uint16_t tag = 0;
        std::vector<uint8_t> body;
    };
    Reply parse(const fake::Used& u) {
        Reply r;
        auto w = u.written(g_);
        EXPECT_EQ(w.size(), u.len);
        auto h = p9::parse_header(w, 1 << 20);
        EXPECT_TRUE(h.has_value());
        if (!h) return r;
        EXPECT_EQ(h->size, u.len) << "used length differs from the reply's size field";
        r.type = h->type;
        r.tag = h->tag;
        r.body.assign(w.begin() + p9::kHeaderSize, w.end());
        return r;
    }
    void handshake() {
        submit(tversion());
        dev_->queue_notify(0);
        auto u = wait_used(1);
        ASSERT_EQ(u.size(), 1u);
        ASSERT_EQ(parse(u[0]).type, p9::kRversion);
        submit(encode(p9::kTattach, 1, [](p9::Writer& w) {
            w.u32(kRootFid);
            w.u32(p9::kNoFid);
            w.str("user");
            w.str("");
            w.u32(1000);
        }));
        dev_->queue_notify(0);
        u = wait_used(1);
        ASSERT_EQ(u.size(), 1u);
        ASSERT_EQ(parse(u[0]).type, p9::kRattach);
    }

    fs::path dir_;
    FakeGuest g_{4 << 20};
    DriverQueue q_{g_, kQSize, VirtioP9::kQueueSize};
    FakeInterrupt irq_;
    std::unique_ptr<WorkerPool> pool_;
    std::unique_ptr<VirtioP9> dev_;
};

TEST_F(VirtioP9Test, IdentityAndConfigHoldTheTag) {
    EXPECT_EQ(dev_->device_type(), VIRTIO_ID_9P);
    EXPECT_EQ(dev_->device_features() & VirtioP9::kFMountTag, VirtioP9::kFMountTag);
    EXPECT_EQ(dev_->num_queues(), 1);
    ASSERT_EQ(dev_->config_size(), 2u + 6u);
    std::vector<uint8_t> cfg(dev_->config_size(), 0xaa);
    dev_->read_config(0, cfg);
    EXPECT_EQ(cfg[0] | cfg[1] << 8, 6);
    EXPECT_EQ(std::string(cfg.begin() + 2, cfg.end()), "share0");
    // Byte by byte, as a driver may read it.
    std::string tag;
    for (uint32_t off = 2; off < dev_->config_size(); ++off) {
        uint8_t c = 0;
        dev_->read_config(off, std::span<uint8_t>(&c, 1));
        tag.push_back(static_cast<char>(c));
    }
    EXPECT_EQ(tag, "share0");
    uint8_t len_hi = 0xff;
    dev_->read_config(1, std::span<uint8_t>(&len_hi, 1));
    EXPECT_EQ(len_hi, 0);
}

TEST_F(VirtioP9Test, LongTagIsTruncated) {
    make_device(1, std::string(100, 't'));
    EXPECT_EQ(dev_->config_size(), 2u + VirtioP9::kMaxTagLen);
    std::vector<uint8_t> cfg(dev_->config_size());
    dev_->read_config(0, cfg);
    EXPECT_EQ(cfg[0] | cfg[1] << 8, static_cast<int>(VirtioP9::kMaxTagLen));
}

TEST_F(VirtioP9Test, ActivateNeedsTheQueue) {
    EXPECT_FALSE(dev_->activate(0, {}, irq_).has_value());
    SplitQueue* none[] = {nullptr};
    EXPECT_FALSE(dev_->activate(0, none, irq_).has_value());
}

TEST_F(VirtioP9Test, NotifyBeforeActivationIgnored) {
    submit(tversion());
    dev_->queue_notify(0);
    pool_.reset();  // flushes anything submitted (nothing should be)
    pool_ = std::make_unique<WorkerPool>(1);
    EXPECT_EQ(q_.used_idx(), 0);
    EXPECT_EQ(dev_->requests(), 0u);
}

TEST_F(VirtioP9Test, TversionGetsRversion) {
    activate();
    const uint16_t head = submit(tversion(p9::kNoTag, 8192));
    dev_->queue_notify(0);
    ASSERT_TRUE(irq_.wait_signals(0, 1));
    auto u = wait_used(1);
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].head, head);
    Reply r = parse(u[0]);
    EXPECT_EQ(r.type, p9::kRversion);
    EXPECT_EQ(r.tag, p9::kNoTag);
    p9::Reader rd(r.body);
    EXPECT_EQ(rd.u32(), 8192u);
    EXPECT_EQ(rd.str(64), "9P2000.L");
    EXPECT_EQ(u[0].len, p9::kHeaderSize + 4 + 2 + 8);
    EXPECT_EQ(dev_->requests(), 1u);
    EXPECT_EQ(irq_.needs_reset(), 0);
}

TEST_F(VirtioP9Test, ScatteredRequestAndResponse) {
    activate();
    handshake();
    // Twalk to hello.txt, split over three readable buffers; the reply over
    // two writable ones whose first is shorter than the header.
    auto req = encode(p9::kTwalk, 7, [](p9::Writer& w) {
        w.u32(kRootFid);
        w.u32(2);
        w.u16(1);
        w.str("hello.txt");
    });
    std::vector<Seg> segs;
    size_t cuts[] = {0, 3, 10, req.size()};
    for (int i = 0; i < 3; ++i) {
        uint64_t a = g_.alloc(cuts[i + 1] - cuts[i]);
        g_.write(a, std::span<const uint8_t>(req).subspan(cuts[i], cuts[i + 1] - cuts[i]));
        segs.push_back({a, static_cast<uint32_t>(cuts[i + 1] - cuts[i]), false});
    }
    segs.push_back({g_.alloc(5), 5, true});
    segs.push_back({g_.alloc(4096), 4096, true});
    q_.add_chain(segs);
    dev_->queue_notify(0);
    auto u = wait_used(1);
    ASSERT_EQ(u.size(), 1u);
    Reply r = parse(u[0]);
    EXPECT_EQ(r.type, p9::kRwalk);
    EXPECT_EQ(r.tag, 7);
    EXPECT_EQ(u[0].len, p9::kHeaderSize + 2 + p9::kQidSize);
}

TEST_F(VirtioP9Test, ManyRequestsInFlightAllComplete) {
    activate();
    handshake();
    irq_.clear();
    constexpr int kN = 40;
    std::map<uint16_t, uint16_t> tag_of_head;
    for (int i = 0; i < kN; ++i) {
        const uint16_t tag = static_cast<uint16_t>(100 + i);
        auto req = encode(p9::kTgetattr, tag, [](p9::Writer& w) {
            w.u32(kRootFid);
            w.u64(p9::kGetattrBasic);
        });
        tag_of_head[submit(req)] = tag;
        if (i % 7 == 0) dev_->queue_notify(0);  // kicks while others run
    }
    dev_->queue_notify(0);
    auto u = wait_used(kN);
    ASSERT_EQ(u.size(), static_cast<size_t>(kN));
    std::set<uint16_t> tags;
    for (const auto& e : u) {
        Reply r = parse(e);
        EXPECT_EQ(r.type, p9::kRgetattr);
        EXPECT_EQ(r.tag, tag_of_head.at(e.head)) << "reply in another request's buffers";
        tags.insert(r.tag);
    }
    EXPECT_EQ(tags.size(), static_cast<size_t>(kN));
    EXPECT_EQ(dev_->requests(), static_cast<uint64_t>(kN + 2));
    EXPECT_GE(irq_.signals_for(0), 1u);
    EXPECT_EQ(irq_.needs_reset(), 0);
}

TEST_F(VirtioP9Test, NoInterruptFlagSuppressesSignal) {
    activate();
    q_.set_avail_flags(VRING_AVAIL_F_NO_INTERRUPT);
    submit(tversion());
    dev_->queue_notify(0);
    ASSERT_EQ(wait_used(1).size(), 1u);
    pool_.reset();  // the worker is done with the request
    pool_ = std::make_unique<WorkerPool>(1);
    EXPECT_EQ(irq_.signals_for(0), 0u);
}

TEST_F(VirtioP9Test, TooSmallResponseBufferStillAnswered) {
    activate();
    // Room for an Rlerror only: Tversion's reply does not fit.
    submit(tversion(), 11);
    dev_->queue_notify(0);
    auto u = wait_used(1);
    ASSERT_EQ(u.size(), 1u);
    EXPECT_LE(u[0].len, 11u);
    if (u[0].len) {
        EXPECT_EQ(parse(u[0]).type, p9::kRlerror);
    }
}

TEST_F(VirtioP9Test, BrokenChainNeedsReset) {
    activate();
    q_.add_chain({{g_.end() - 8, 64, false}});
    dev_->queue_notify(0);
    EXPECT_EQ(irq_.needs_reset(), 1);
    // No more service on the broken queue.
    submit(tversion());
    dev_->queue_notify(0);
    pool_.reset();
    pool_ = std::make_unique<WorkerPool>(1);
    EXPECT_EQ(q_.used_idx(), 0);
}

TEST_F(VirtioP9Test, ResetWaitsForInFlightRequests) {
    make_device(1, "share0");
    activate();
    Gate gate;
    pool_->submit([&] { gate.wait(); });
    gate.wait_entered();
    submit(tversion());
    submit(tversion());
    dev_->queue_notify(0);  // both queued behind the gate
    EXPECT_EQ(dev_->requests(), 2u);

    std::atomic<bool> reset_done{false};
    auto resetter = std::async(std::launch::async, [&] {
        dev_->reset();
        reset_done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(reset_done.load()) << "reset() returned with requests in flight";
    gate.open();
    resetter.get();
    EXPECT_TRUE(reset_done.load());
    // Replies of the old generation were dropped: nothing in the used ring.
    EXPECT_EQ(q_.used_idx(), 0);
    EXPECT_EQ(irq_.signals_for(0), 0u);

    // The driver sets the queue up again: the device serves it.
    q_.configure();
    activate();
    submit(tversion());
    dev_->queue_notify(0);
    auto u = wait_used(1);
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(parse(u[0]).type, p9::kRversion);
}

TEST_F(VirtioP9Test, DestructionWaitsForInFlightRequests) {
    make_device(1, "share0");
    activate();
    Gate gate;
    pool_->submit([&] { gate.wait(); });
    gate.wait_entered();
    submit(tversion());
    dev_->queue_notify(0);
    std::thread opener([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        gate.open();
    });
    dev_.reset();  // must wait for the queued request, not leave it dangling
    opener.join();
    pool_.reset();  // would run a stale job here if the device had not waited
}

}  // namespace
}  // namespace kvmsandbox
