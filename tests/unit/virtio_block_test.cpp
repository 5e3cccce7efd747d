#include "virtio/block/block.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fake_driver.h"
#include "gate.h"
#include "virtio/block/disk_image.h"

namespace kvmsandbox {
namespace {

namespace fs = std::filesystem;
using fake::DriverQueue;
using fake::FakeGuest;
using fake::FakeInterrupt;
using fake::Seg;
using B = VirtioBlock;

constexpr uint16_t kQSize = 256;
constexpr uint64_t kImageSectors = 2048;  // 1 MiB
constexpr uint64_t kImageBytes = kImageSectors * 512;

// The byte the test image holds at `offset` before any test writes to it.
uint8_t pattern(uint64_t offset) {
    return static_cast<uint8_t>((offset * 7 + offset / 512) ^ 0x5a);
}

std::vector<uint8_t> header(uint32_t type, uint64_t sector) {
    std::vector<uint8_t> h(16, 0);
    for (int i = 0; i < 4; ++i) h[i] = static_cast<uint8_t>(type >> (8 * i));
    for (int i = 0; i < 8; ++i) h[8 + i] = static_cast<uint8_t>(sector >> (8 * i));
    return h;
}

std::vector<uint8_t> range(uint64_t sector, uint32_t sectors, uint32_t flags) {
    std::vector<uint8_t> r(16, 0);
    for (int i = 0; i < 8; ++i) r[i] = static_cast<uint8_t>(sector >> (8 * i));
    for (int i = 0; i < 4; ++i) r[8 + i] = static_cast<uint8_t>(sectors >> (8 * i));
    for (int i = 0; i < 4; ++i) r[12 + i] = static_cast<uint8_t>(flags >> (8 * i));
    return r;
}

using fake::Gate;

// Makes a private temp directory, removed at the end of the test.
class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/virtio_block_test.XXXXXX";
        EXPECT_NE(mkdtemp(tmpl), nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

void write_file(const fs::path& p, const std::vector<uint8_t>& data) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ::close(fd);
}

std::vector<uint8_t> read_back(const fs::path& p, uint64_t offset, size_t len) {
    std::vector<uint8_t> v(len);
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, v.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
    ::close(fd);
    return v;
}

uint64_t counter(const VirtioDevice& d, const std::string& name) {
    for (const auto& [n, v] : d.counters())
        if (n == name) return v;
    ADD_FAILURE() << "no counter " << name;
    return 0;
}

class VirtioBlockTest : public ::testing::Test {
  protected:
    VirtioBlockTest() : g_(4 << 20), q_(g_, kQSize, kQSize) {}

    void SetUp() override {
        image_ = dir_.path() / "disk.img";
        std::vector<uint8_t> data(kImageBytes);
        for (uint64_t i = 0; i < data.size(); ++i) data[i] = pattern(i);
        write_file(image_, data);
        make_device(false, 4);
    }
    void TearDown() override {
        dev_.reset();
        pool_.reset();
    }

    void make_device(bool read_only, size_t threads, std::string serial = {}) {
        dev_.reset();
        pool_.reset();
        auto img = DiskImage::open(image_.string(), read_only);
        ASSERT_TRUE(img.has_value()) << img.error().message;
        pool_ = std::make_unique<WorkerPool>(threads);
        pool_threads_ = threads;
        dev_ =
            std::make_unique<VirtioBlock>(std::move(*img), "disk.img", *pool_, std::move(serial));
    }
    void activate(uint64_t features = ~0ull) {
        SplitQueue* qs[] = {q_.ptr()};
        auto r = dev_->activate(
            virtio::bit(VIRTIO_F_VERSION_1) | (features & dev_->device_features()), qs, irq_);
        ASSERT_TRUE(r.has_value()) << r.error().message;
    }

    struct Req {
        uint16_t head = 0;
        uint64_t status = 0;    // gpa of the status byte
        std::vector<Seg> data;  // the data buffers, in order
    };
    // Publishes header (+ readable `out` data, one buffer per piece) +
    // writable data buffers of the sizes in `in` + a 1-byte status buffer.
    Req submit(uint32_t type, uint64_t sector, const std::vector<std::vector<uint8_t>>& out = {},
               const std::vector<uint32_t>& in = {}) {
        Req r;
        std::vector<Seg> segs;
        auto h = header(type, sector);
        const uint64_t hg = g_.alloc(h.size());
        g_.write(hg, h);
        segs.push_back({hg, 16, false});
        for (const auto& piece : out) {
            const uint64_t a = g_.alloc(piece.size());
            g_.write(a, piece);
            segs.push_back({a, static_cast<uint32_t>(piece.size()), false});
            r.data.push_back(segs.back());
        }
        for (uint32_t len : in) {
            segs.push_back({g_.alloc(len), len, true});
            r.data.push_back(segs.back());
        }
        r.status = g_.alloc(1);
        *g_.host(r.status) = 0xee;  // neither OK nor an error: must be overwritten
        segs.push_back({r.status, 1, true});
        r.head = q_.add_chain(segs);
        return r;
    }
    uint8_t status(const Req& r) { return *g_.host(r.status); }
    // Everything the writable data buffers of `r` hold, concatenated.
    std::vector<uint8_t> data_in(const Req& r) {
        std::vector<uint8_t> out;
        for (const auto& s : r.data) {
            if (!s.writable) continue;
            auto part = g_.read(s.gpa, s.len);
            out.insert(out.end(), part.begin(), part.end());
        }
        return out;
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
    // Submits, kicks, waits for completion; returns the status byte.
    uint8_t run(const Req& r, uint32_t* used_len = nullptr) {
        dev_->queue_notify(0);
        auto u = wait_used(1);
        if (u.size() != 1) return 0xff;
        EXPECT_EQ(u[0].head, r.head);
        if (used_len) *used_len = u[0].len;
        return status(r);
    }
    std::vector<uint8_t> expected(uint64_t offset, size_t len) {
        std::vector<uint8_t> v(len);
        for (size_t i = 0; i < len; ++i) v[i] = pattern(offset + i);
        return v;
    }
    // Drains the pool so nothing runs behind the test's back.
    // Waits until every job queued so far has finished: one barrier job per
    // worker, queued behind them (the pool is FIFO), holds every worker at
    // once only when all earlier jobs are done. The device keeps its pool:
    // it holds a reference to it.
    void drain() {
        struct Barrier {
            std::mutex mu;
            std::condition_variable cv;
            size_t arrived = 0;
        };
        auto b = std::make_shared<Barrier>();
        const size_t n = pool_threads_;
        for (size_t i = 0; i < n; ++i) {
            pool_->submit([b, n] {
                std::unique_lock lock(b->mu);
                ++b->arrived;
                b->cv.notify_all();
                b->cv.wait(lock, [&] { return b->arrived == n; });
            });
        }
        std::unique_lock lock(b->mu);
        b->cv.wait(lock, [&] { return b->arrived == n; });
    }

    size_t pool_threads_ = 0;
    TempDir dir_;
    fs::path image_;
    FakeGuest g_;
    DriverQueue q_;
    FakeInterrupt irq_;
    std::unique_ptr<WorkerPool> pool_;
    std::unique_ptr<VirtioBlock> dev_;
};

TEST_F(VirtioBlockTest, ReadAcrossSegments) {
    activate();
    auto r = submit(VIRTIO_BLK_T_IN, 5, {}, {512, 1024, 512});
    uint32_t len = 0;
    EXPECT_EQ(run(r, &len), VIRTIO_BLK_S_OK);
    EXPECT_EQ(len, 2048u + 1);
    EXPECT_EQ(data_in(r), expected(5 * 512, 2048));
    EXPECT_EQ(counter(*dev_, "reads"), 1u);
    EXPECT_EQ(counter(*dev_, "read_bytes"), 2048u);
    EXPECT_GE(irq_.signals_for(0), 1u);
    EXPECT_EQ(irq_.needs_reset(), 0);
}

TEST_F(VirtioBlockTest, WriteAcrossSegments) {
    activate();
    std::vector<uint8_t> a(512, 0x11), b(1536, 0x22), c(1024, 0x33);
    auto r = submit(VIRTIO_BLK_T_OUT, 100, {a, b, c});
    uint32_t len = 0;
    EXPECT_EQ(run(r, &len), VIRTIO_BLK_S_OK);
    EXPECT_EQ(len, 1u);
    std::vector<uint8_t> want = a;
    want.insert(want.end(), b.begin(), b.end());
    want.insert(want.end(), c.begin(), c.end());
    EXPECT_EQ(read_back(image_, 100 * 512, want.size()), want);
    // Neighbours untouched.
    EXPECT_EQ(read_back(image_, 99 * 512, 512), expected(99 * 512, 512));
    EXPECT_EQ(read_back(image_, 106 * 512, 512), expected(106 * 512, 512));
    EXPECT_EQ(counter(*dev_, "writes"), 1u);
    EXPECT_EQ(counter(*dev_, "write_bytes"), 3072u);
}

TEST_F(VirtioBlockTest, HeaderDataAndStatusMayShareBuffers) {
    // VERSION_1 implies ANY_LAYOUT: the header and data in one buffer, the
    // data and status in another.
    activate();
    std::vector<uint8_t> req = header(VIRTIO_BLK_T_OUT, 3);
    req.resize(16 + 512, 0x77);
    const uint64_t w = g_.alloc(req.size());
    g_.write(w, req);
    const uint64_t st = g_.alloc(1);
    q_.add_chain({{w, static_cast<uint32_t>(req.size()), false}, {st, 1, true}});
    dev_->queue_notify(0);
    ASSERT_EQ(wait_used(1).size(), 1u);
    EXPECT_EQ(*g_.host(st), VIRTIO_BLK_S_OK);
    EXPECT_EQ(read_back(image_, 3 * 512, 512), std::vector<uint8_t>(512, 0x77));

    const uint64_t h = g_.alloc(8);
    const uint64_t rest = g_.alloc(8 + 512 + 1);
    auto hdr = header(VIRTIO_BLK_T_IN, 3);
    g_.write(h, std::span<const uint8_t>(hdr.data(), 8));
    g_.write(rest, std::span<const uint8_t>(hdr.data() + 8, 8));
    // Split header (8 + 8 readable), then one writable buffer: data + status.
    const uint64_t io = g_.alloc(513);
    q_.add_chain({{h, 8, false}, {rest, 8, false}, {io, 513, true}});
    dev_->queue_notify(0);
    auto u = wait_used(1);
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(u[0].len, 513u);
    EXPECT_EQ(g_.read(io, 512), std::vector<uint8_t>(512, 0x77));
    EXPECT_EQ(*g_.host(io + 512), VIRTIO_BLK_S_OK);
}

TEST_F(VirtioBlockTest, ManyRequestsInFlight) {
    activate();
    std::vector<Req> reqs;
    for (uint64_t i = 0; i < 64; ++i)
        reqs.push_back(submit(VIRTIO_BLK_T_IN, i * 16, {}, {4096, 4096}));
    dev_->queue_notify(0);
    auto u = wait_used(reqs.size());
    ASSERT_EQ(u.size(), reqs.size());
    for (uint64_t i = 0; i < reqs.size(); ++i) {
        EXPECT_EQ(status(reqs[i]), VIRTIO_BLK_S_OK);
        EXPECT_EQ(data_in(reqs[i]), expected(i * 16 * 512, 8192)) << "request " << i;
    }
    EXPECT_EQ(counter(*dev_, "reads"), 64u);
}

TEST_F(VirtioBlockTest, Flush) {
    activate();
    auto r = submit(VIRTIO_BLK_T_FLUSH, 0);
    EXPECT_EQ(run(r), VIRTIO_BLK_S_OK);
    EXPECT_EQ(counter(*dev_, "flushes"), 1u);
    // A flush carrying data is malformed.
    auto bad = submit(VIRTIO_BLK_T_FLUSH, 0, {std::vector<uint8_t>(512, 1)});
    EXPECT_EQ(run(bad), VIRTIO_BLK_S_IOERR);
}

TEST_F(VirtioBlockTest, DiscardPunchesHole) {
    activate();
    auto r = submit(VIRTIO_BLK_T_DISCARD, 0, {range(16, 16, 0)});
    EXPECT_EQ(run(r), VIRTIO_BLK_S_OK);
    EXPECT_EQ(read_back(image_, 16 * 512, 16 * 512), std::vector<uint8_t>(16 * 512, 0));
    EXPECT_EQ(read_back(image_, 15 * 512, 512), expected(15 * 512, 512));
    EXPECT_EQ(read_back(image_, 32 * 512, 512), expected(32 * 512, 512));
    EXPECT_EQ(fs::file_size(image_), kImageBytes);
    EXPECT_EQ(counter(*dev_, "discards"), 1u);

    // Several ranges in one request.
    auto two = submit(VIRTIO_BLK_T_DISCARD, 0, {range(100, 8, 0), range(200, 8, 0)});
    EXPECT_EQ(run(two), VIRTIO_BLK_S_OK);
    EXPECT_EQ(read_back(image_, 100 * 512, 8 * 512), std::vector<uint8_t>(8 * 512, 0));
    EXPECT_EQ(read_back(image_, 200 * 512, 8 * 512), std::vector<uint8_t>(8 * 512, 0));
    EXPECT_EQ(read_back(image_, 108 * 512, 512), expected(108 * 512, 512));
}

TEST_F(VirtioBlockTest, DiscardRejectsBadRanges) {
    activate();
    // UNMAP on a discard, and unknown flags: UNSUPP (spec).
    EXPECT_EQ(
        run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(0, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)})),
        VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(0, 8, 2)})), VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(counter(*dev_, "unsupported"), 2u);
    // Out of range, too long, too many segments, a truncated segment.
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(kImageSectors - 4, 8, 0)})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(~0ull - 2, 8, 0)})), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(0, B::kMaxDiscardSectors + 1, 0)})),
              VIRTIO_BLK_S_IOERR);
    std::vector<uint8_t> many;
    for (uint32_t i = 0; i <= B::kMaxDiscardSeg; ++i) {
        auto one = range(i, 1, 0);
        many.insert(many.end(), one.begin(), one.end());
    }
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {many})), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {std::vector<uint8_t>(15, 0)})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0)), VIRTIO_BLK_S_IOERR);  // no range at all
    // A bad range anywhere means nothing was discarded.
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(0, 8, 0), range(kImageSectors, 1, 0)})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(read_back(image_, 0, 8 * 512), expected(0, 8 * 512));
    EXPECT_EQ(counter(*dev_, "discards"), 0u);
}

TEST_F(VirtioBlockTest, DiscardNotNegotiatedIsUnsupported) {
    activate(~virtio::bit(VIRTIO_BLK_F_DISCARD));
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(0, 8, 0)})), VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(read_back(image_, 0, 8 * 512), expected(0, 8 * 512));
}

TEST_F(VirtioBlockTest, WriteZeroes) {
    activate();
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, {range(40, 3, 0)})), VIRTIO_BLK_S_OK);
    EXPECT_EQ(read_back(image_, 40 * 512, 3 * 512), std::vector<uint8_t>(3 * 512, 0));
    EXPECT_EQ(read_back(image_, 39 * 512, 512), expected(39 * 512, 512));
    EXPECT_EQ(read_back(image_, 43 * 512, 512), expected(43 * 512, 512));

    EXPECT_EQ(run(submit(VIRTIO_BLK_T_WRITE_ZEROES, 0,
                         {range(300, 17, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)})),
              VIRTIO_BLK_S_OK);
    EXPECT_EQ(read_back(image_, 300 * 512, 17 * 512), std::vector<uint8_t>(17 * 512, 0));
    EXPECT_EQ(read_back(image_, 317 * 512, 512), expected(317 * 512, 512));
    EXPECT_EQ(fs::file_size(image_), kImageBytes);
    EXPECT_EQ(counter(*dev_, "write_zeroes"), 2u);

    // Unknown flags are UNSUPP; ranges past the end are IOERR.
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, {range(0, 1, 4)})), VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, {range(kImageSectors, 1, 0)})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(
        run(submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, {range(0, B::kMaxWriteZeroesSectors + 1, 0)})),
        VIRTIO_BLK_S_IOERR);
}

TEST_F(VirtioBlockTest, GetIdDefaultSerial) {
    activate();
    auto r = submit(VIRTIO_BLK_T_GET_ID, 0, {}, {20});
    uint32_t len = 0;
    EXPECT_EQ(run(r, &len), VIRTIO_BLK_S_OK);
    EXPECT_EQ(len, 21u);
    auto id = data_in(r);
    EXPECT_EQ(std::string(id.begin(), id.end()), dev_->serial());
    EXPECT_EQ(dev_->serial().size(), 20u);
    struct stat st {};
    ASSERT_EQ(::stat(image_.c_str(), &st), 0);
    EXPECT_NE(dev_->serial().find(fmt::format("{:x}", st.st_ino)), std::string::npos);
}

TEST_F(VirtioBlockTest, GetIdNamedSerialIsNulPadded) {
    make_device(false, 2, "my-disk");
    activate();
    auto r = submit(VIRTIO_BLK_T_GET_ID, 0, {}, {20});
    EXPECT_EQ(run(r), VIRTIO_BLK_S_OK);
    std::vector<uint8_t> want(20, 0);
    std::memcpy(want.data(), "my-disk", 7);
    EXPECT_EQ(data_in(r), want);

    // A serial longer than 20 bytes is cut.
    make_device(false, 2, "0123456789abcdefghijklmnop");
    EXPECT_EQ(dev_->serial(), "0123456789abcdefghij");
}

TEST_F(VirtioBlockTest, OutOfRangeSector) {
    activate();
    // The last sector is fine, one past it is not.
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, kImageSectors - 1, {}, {512})), VIRTIO_BLK_S_OK);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, kImageSectors, {}, {512})), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, kImageSectors - 1, {}, {1024})), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_OUT, kImageSectors, {std::vector<uint8_t>(512, 1)})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(counter(*dev_, "errors"), 3u);
    EXPECT_EQ(fs::file_size(image_), kImageBytes);
}

TEST_F(VirtioBlockTest, SectorPlusLengthOverflow) {
    activate();
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, ~0ull, {}, {512})), VIRTIO_BLK_S_IOERR);
    // sector * 512 wraps to a small offset: must not be read.
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, 1ull << 55, {}, {512})), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_OUT, ~0ull - 1, {std::vector<uint8_t>(1024, 1)})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(read_back(image_, 0, 1024), expected(0, 1024));
    EXPECT_EQ(irq_.needs_reset(), 0);
}

TEST_F(VirtioBlockTest, LengthsMustBeWholeSectorsAndMatchDirection) {
    activate();
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, 0, {}, {511})), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_OUT, 0, {std::vector<uint8_t>(513, 1)})), VIRTIO_BLK_S_IOERR);
    // A read with readable data, a write with writable data.
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, 0, {std::vector<uint8_t>(512, 1)}, {512})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_OUT, 0, {std::vector<uint8_t>(512, 1)}, {512})),
              VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(read_back(image_, 0, 1024), expected(0, 1024));
    EXPECT_EQ(counter(*dev_, "errors"), 4u);
    EXPECT_EQ(counter(*dev_, "writes"), 0u);
    // A zero-length read is a no-op that succeeds.
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, 0)), VIRTIO_BLK_S_OK);
}

TEST_F(VirtioBlockTest, ReadOnlyDisk) {
    make_device(true, 2);
    const uint64_t f = dev_->device_features();
    EXPECT_TRUE(f & virtio::bit(VIRTIO_BLK_F_RO));
    EXPECT_FALSE(f & virtio::bit(VIRTIO_BLK_F_DISCARD));
    EXPECT_FALSE(f & virtio::bit(VIRTIO_BLK_F_WRITE_ZEROES));
    EXPECT_TRUE(f & virtio::bit(VIRTIO_BLK_F_FLUSH));
    activate();
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_OUT, 0, {std::vector<uint8_t>(512, 1)})), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(counter(*dev_, "errors"), 1u);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_DISCARD, 0, {range(0, 8, 0)})), VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, {range(0, 8, 0)})), VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(read_back(image_, 0, 8 * 512), expected(0, 8 * 512));
    // Reads and flushes still work.
    auto r = submit(VIRTIO_BLK_T_IN, 0, {}, {512});
    EXPECT_EQ(run(r), VIRTIO_BLK_S_OK);
    EXPECT_EQ(data_in(r), expected(0, 512));
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_FLUSH, 0)), VIRTIO_BLK_S_OK);
}

TEST_F(VirtioBlockTest, ShortHeaderIsIoErr) {
    activate();
    const uint64_t h = g_.alloc(8);
    const uint64_t st = g_.alloc(1);
    q_.add_chain({{h, 8, false}, {st, 1, true}});
    dev_->queue_notify(0);
    ASSERT_EQ(wait_used(1).size(), 1u);
    EXPECT_EQ(*g_.host(st), VIRTIO_BLK_S_IOERR);
    // No readable byte at all.
    q_.add_chain({{st, 1, true}});
    dev_->queue_notify(0);
    ASSERT_EQ(wait_used(1).size(), 1u);
    EXPECT_EQ(*g_.host(st), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(irq_.needs_reset(), 0);
}

TEST_F(VirtioBlockTest, StatusNotWritableNeedsReset) {
    activate();
    q_.add_out(header(VIRTIO_BLK_T_IN, 0));
    dev_->queue_notify(0);
    drain();
    EXPECT_EQ(irq_.needs_reset(), 1);
    EXPECT_EQ(q_.used_idx(), 0);
    // No more service until the driver resets the device.
    submit(VIRTIO_BLK_T_IN, 0, {}, {512});
    dev_->queue_notify(0);
    drain();
    EXPECT_EQ(q_.used_idx(), 0);
    dev_->reset();
    q_.configure();
    activate();
    EXPECT_EQ(run(submit(VIRTIO_BLK_T_IN, 0, {}, {512})), VIRTIO_BLK_S_OK);
}

TEST_F(VirtioBlockTest, BrokenRingNeedsReset) {
    activate();
    q_.write_desc(0, g_.alloc(16), 16, VRING_DESC_F_NEXT, 0);  // loops to itself
    q_.publish(0);
    dev_->queue_notify(0);
    drain();
    EXPECT_EQ(irq_.needs_reset(), 1);
    EXPECT_EQ(q_.used_idx(), 0);
}

TEST_F(VirtioBlockTest, UnknownTypeIsUnsupported) {
    activate();
    EXPECT_EQ(run(submit(2 /* legacy SCSI */, 0, {}, {512})), VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(run(submit(0x80000001 /* legacy barrier */, 0, {std::vector<uint8_t>(512, 1)})),
              VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(run(submit(14 /* secure erase, not offered */, 0, {range(0, 1, 0)})),
              VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(counter(*dev_, "unsupported"), 3u);
    EXPECT_EQ(read_back(image_, 0, 512), expected(0, 512));
}

TEST_F(VirtioBlockTest, NotifyBeforeActivationIsIgnored) {
    submit(VIRTIO_BLK_T_IN, 0, {}, {512});
    dev_->queue_notify(0);
    drain();
    EXPECT_EQ(q_.used_idx(), 0);
}

TEST_F(VirtioBlockTest, ResetWithRequestsInFlight) {
    make_device(false, 1);
    activate();
    Gate gate;
    pool_->submit([&] { gate.wait(); });
    gate.wait_entered();
    submit(VIRTIO_BLK_T_IN, 0, {}, {512});
    submit(VIRTIO_BLK_T_OUT, 0, {std::vector<uint8_t>(512, 0x99)});
    dev_->queue_notify(0);  // both queued behind the gate

    std::atomic<bool> reset_done{false};
    auto resetter = std::async(std::launch::async, [&] {
        dev_->reset();
        reset_done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(reset_done.load()) << "reset() returned with requests in flight";
    gate.open();
    resetter.get();
    // The old generation's requests were dropped: nothing completed, the
    // write that had not started never reached the disk.
    EXPECT_EQ(q_.used_idx(), 0);
    EXPECT_EQ(irq_.signals_for(0), 0u);
    EXPECT_EQ(read_back(image_, 0, 512), expected(0, 512));

    q_.configure();
    activate();
    auto r = submit(VIRTIO_BLK_T_IN, 1, {}, {512});
    EXPECT_EQ(run(r), VIRTIO_BLK_S_OK);
    EXPECT_EQ(data_in(r), expected(512, 512));
}

TEST_F(VirtioBlockTest, ResetWhileWorkersRun) {
    // Resets racing with real I/O on several workers: none may hang, crash
    // or complete a request of an older generation (ASan/TSan food).
    activate();
    for (int round = 0; round < 20; ++round) {
        for (int i = 0; i < 16; ++i)
            submit(VIRTIO_BLK_T_IN, static_cast<uint64_t>(i) * 8, {}, {4096});
        dev_->queue_notify(0);
        dev_->reset();
        q_.configure();
        activate();
    }
    auto r = submit(VIRTIO_BLK_T_IN, 0, {}, {512});
    EXPECT_EQ(run(r), VIRTIO_BLK_S_OK);
}

TEST_F(VirtioBlockTest, DestructionWaitsForInFlightRequests) {
    make_device(false, 1);
    activate();
    Gate gate;
    pool_->submit([&] { gate.wait(); });
    gate.wait_entered();
    submit(VIRTIO_BLK_T_IN, 0, {}, {512});
    dev_->queue_notify(0);
    std::thread opener([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        gate.open();
    });
    dev_.reset();
    opener.join();
    pool_.reset();
}

TEST_F(VirtioBlockTest, ConfigSpaceLayout) {
    // Our offsets against the kernel's struct.
    EXPECT_EQ(offsetof(virtio_blk_config, capacity), 0u);
    EXPECT_EQ(offsetof(virtio_blk_config, seg_max), 12u);
    EXPECT_EQ(offsetof(virtio_blk_config, blk_size), 20u);
    EXPECT_EQ(offsetof(virtio_blk_config, min_io_size), 26u);
    EXPECT_EQ(offsetof(virtio_blk_config, wce), 32u);
    EXPECT_EQ(offsetof(virtio_blk_config, num_queues), 34u);
    EXPECT_EQ(offsetof(virtio_blk_config, max_discard_sectors), 36u);
    EXPECT_EQ(offsetof(virtio_blk_config, max_discard_seg), 40u);
    EXPECT_EQ(offsetof(virtio_blk_config, discard_sector_alignment), 44u);
    EXPECT_EQ(offsetof(virtio_blk_config, max_write_zeroes_sectors), 48u);
    EXPECT_EQ(offsetof(virtio_blk_config, max_write_zeroes_seg), 52u);
    EXPECT_EQ(offsetof(virtio_blk_config, write_zeroes_may_unmap), 56u);
    EXPECT_EQ(offsetof(virtio_blk_config, max_secure_erase_sectors), B::kConfigSize);

    ASSERT_EQ(dev_->config_size(), B::kConfigSize);
    // Fields of a packed struct cannot bind to EXPECT_EQ's references.
    auto u = [](uint64_t v) { return v; };
    virtio_blk_config cfg{};
    dev_->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&cfg), B::kConfigSize));
    EXPECT_EQ(u(cfg.capacity), kImageSectors);
    EXPECT_EQ(u(cfg.size_max), 0u);
    EXPECT_EQ(u(cfg.seg_max), B::kSegMax);
    EXPECT_EQ(u(cfg.geometry.cylinders), 0u);
    EXPECT_EQ(u(cfg.blk_size), 512u);
    EXPECT_EQ(u(cfg.physical_block_exp), 0u);
    EXPECT_EQ(u(cfg.wce), 1u);
    EXPECT_EQ(u(cfg.num_queues), 1u);
    EXPECT_EQ(u(cfg.max_discard_sectors), B::kMaxDiscardSectors);
    EXPECT_EQ(u(cfg.max_discard_seg), B::kMaxDiscardSeg);
    EXPECT_EQ(u(cfg.discard_sector_alignment), B::kDiscardSectorAlignment);
    EXPECT_EQ(u(cfg.max_write_zeroes_sectors), B::kMaxWriteZeroesSectors);
    EXPECT_EQ(u(cfg.max_write_zeroes_seg), B::kMaxWriteZeroesSeg);
    EXPECT_EQ(u(cfg.write_zeroes_may_unmap), 1u);

    // Partial reads (drivers read le64 fields as two 32-bit halves).
    uint8_t part[4];
    dev_->read_config(20, part);
    EXPECT_EQ(part[0] | part[1] << 8 | part[2] << 16 | part[3] << 24, 512);
    dev_->read_config(4, part);
    EXPECT_EQ(part[0] | part[1] << 8 | part[2] << 16 | part[3] << 24, 0);
    dev_->read_config(0, part);
    EXPECT_EQ(part[0] | part[1] << 8 | part[2] << 16 | part[3] << 24,
              static_cast<int>(kImageSectors));

    // Writes are ignored.
    uint8_t ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    dev_->write_config(0, ones);
    dev_->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&cfg), B::kConfigSize));
    EXPECT_EQ(u(cfg.capacity), kImageSectors);

    EXPECT_EQ(dev_->device_type(), VIRTIO_ID_BLOCK);
    EXPECT_EQ(dev_->device_features(),
              virtio::bit(VIRTIO_BLK_F_SEG_MAX) | virtio::bit(VIRTIO_BLK_F_BLK_SIZE) |
                  virtio::bit(VIRTIO_BLK_F_FLUSH) | virtio::bit(VIRTIO_BLK_F_DISCARD) |
                  virtio::bit(VIRTIO_BLK_F_WRITE_ZEROES));
}

TEST_F(VirtioBlockTest, ReadOnlyConfigHasNoDiscard) {
    make_device(true, 1);
    auto u = [](uint64_t v) { return v; };
    virtio_blk_config cfg{};
    dev_->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&cfg), B::kConfigSize));
    EXPECT_EQ(u(cfg.capacity), kImageSectors);
    EXPECT_EQ(u(cfg.max_discard_sectors), 0u);
    EXPECT_EQ(u(cfg.max_write_zeroes_sectors), 0u);
    EXPECT_EQ(u(cfg.write_zeroes_may_unmap), 0u);
}

TEST_F(VirtioBlockTest, NameAndCounters) {
    EXPECT_EQ(dev_->name(), "blk:disk.img");
    std::vector<std::string> names;
    for (const auto& [n, v] : dev_->counters()) {
        names.push_back(n);
        EXPECT_EQ(v, 0u);
    }
    EXPECT_EQ(names,
              (std::vector<std::string>{"reads", "writes", "read_bytes", "write_bytes", "flushes",
                                        "discards", "write_zeroes", "errors", "unsupported"}));
}

// ---- DiskImage ----

class DiskImageTest : public ::testing::Test {
  protected:
    fs::path make(const std::string& name, size_t size) {
        auto p = dir_.path() / name;
        write_file(p, std::vector<uint8_t>(size, 0xab));
        return p;
    }
    TempDir dir_;
};

TEST_F(DiskImageTest, OpensAndSizes) {
    auto p = make("a.img", 8192);
    auto img = DiskImage::open(p.string(), false);
    ASSERT_TRUE(img.has_value()) << img.error().message;
    EXPECT_EQ(img->sectors(), 16u);
    EXPECT_EQ(img->size_bytes(), 8192u);
    EXPECT_EQ(img->tail_bytes(), 0u);
    EXPECT_FALSE(img->read_only());
    EXPECT_FALSE(img->is_block_device());
    EXPECT_EQ(img->path(), p.string());
    EXPECT_EQ(img->default_serial().size(), DiskImage::kSerialLen);
    const int fdflags = ::fcntl(img->fd(), F_GETFD);
    EXPECT_TRUE(fdflags & FD_CLOEXEC);
    EXPECT_EQ(::fcntl(img->fd(), F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_RDWR);
}

TEST_F(DiskImageTest, PartialLastSectorIsDropped) {
    auto img = DiskImage::open(make("odd.img", 1000).string(), true);
    ASSERT_TRUE(img.has_value()) << img.error().message;
    EXPECT_EQ(img->sectors(), 1u);
    EXPECT_EQ(img->tail_bytes(), 488u);
    EXPECT_TRUE(img->read_only());
}

TEST_F(DiskImageTest, MissingFile) {
    auto p = dir_.path() / "nope.img";
    auto img = DiskImage::open(p.string(), false);
    ASSERT_FALSE(img.has_value());
    EXPECT_EQ(img.error().message,
              "disk " + p.string() + ": cannot open: No such file or directory");
}

TEST_F(DiskImageTest, Directory) {
    for (bool ro : {false, true}) {
        auto img = DiskImage::open(dir_.path().string(), ro);
        ASSERT_FALSE(img.has_value());
        EXPECT_EQ(img.error().message,
                  "disk " + dir_.path().string() + ": not a regular file or block device");
    }
}

TEST_F(DiskImageTest, FifoIsRefusedWithoutBlocking) {
    auto p = dir_.path() / "fifo";
    ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
    auto img = DiskImage::open(p.string(), true);
    ASSERT_FALSE(img.has_value());
    EXPECT_NE(img.error().message.find("not a regular file"), std::string::npos);
}

TEST_F(DiskImageTest, CharacterDeviceIsRefused) {
    auto img = DiskImage::open("/dev/null", true);
    ASSERT_FALSE(img.has_value());
    EXPECT_EQ(img.error().message, "disk /dev/null: not a regular file or block device");
}

TEST_F(DiskImageTest, TooSmall) {
    for (size_t size : {0, 511}) {
        auto p = make("small.img", size);
        auto img = DiskImage::open(p.string(), false);
        ASSERT_FALSE(img.has_value());
        EXPECT_NE(img.error().message.find("smaller than one 512-byte sector"), std::string::npos)
            << img.error().message;
        EXPECT_EQ(img.error().message.rfind("disk " + p.string() + ": ", 0), 0u);
    }
}

TEST_F(DiskImageTest, LockedByAnotherOpen) {
    auto p = make("locked.img", 4096).string();
    const std::string busy = "disk " + p + ": in use by another process";
    {
        auto rw = DiskImage::open(p, false);
        ASSERT_TRUE(rw.has_value()) << rw.error().message;
        auto rw2 = DiskImage::open(p, false);
        ASSERT_FALSE(rw2.has_value());
        EXPECT_EQ(rw2.error().message, busy);
        auto ro = DiskImage::open(p, true);
        ASSERT_FALSE(ro.has_value());
        EXPECT_EQ(ro.error().message, busy);
    }
    {
        // Readers share; a writer must wait for all of them.
        auto ro1 = DiskImage::open(p, true);
        auto ro2 = DiskImage::open(p, true);
        ASSERT_TRUE(ro1.has_value()) << ro1.error().message;
        ASSERT_TRUE(ro2.has_value()) << ro2.error().message;
        auto rw = DiskImage::open(p, false);
        ASSERT_FALSE(rw.has_value());
        EXPECT_EQ(rw.error().message, busy);
    }
    // The lock goes with the last fd.
    auto again = DiskImage::open(p, false);
    EXPECT_TRUE(again.has_value());
}

TEST_F(DiskImageTest, LockSurvivesMoveIntoDevice) {
    auto p = make("moved.img", 4096).string();
    auto img = DiskImage::open(p, false);
    ASSERT_TRUE(img.has_value());
    WorkerPool pool(1);
    {
        VirtioBlock dev(std::move(*img), "moved.img", pool);
        EXPECT_FALSE(DiskImage::open(p, true).has_value());
    }
    EXPECT_TRUE(DiskImage::open(p, false).has_value());
}

}  // namespace
}  // namespace kvmsandbox
