// base/io: write_all over pipes that take less than asked (small, full,
// non-blocking), writes interrupted by signals, more buffers than IOV_MAX
// and a reader that went away.
#include "base/io.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/unique_fd.h"

namespace kvmsandbox {
namespace {

struct Pipe {
    UniqueFd r, w;
};

Pipe make_pipe(int wflags = 0) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
    // The smallest pipe: every large write is a short one.
    ::fcntl(p.w.get(), F_SETPIPE_SZ, 4096);
    if (wflags) ::fcntl(p.w.get(), F_SETFL, ::fcntl(p.w.get(), F_GETFL) | wflags);
    return p;
}

std::vector<uint8_t> pattern(size_t n, unsigned seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed);
    return v;
}

// Reads everything until EOF, after `delay`.
std::thread reader(int fd, std::vector<uint8_t>& out,
                   std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
    return std::thread([fd, &out, delay] {
        std::this_thread::sleep_for(delay);
        uint8_t buf[1000];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            out.insert(out.end(), buf, buf + n);
        }
    });
}

TEST(BaseIo, WritesOneBufferThroughShortWrites) {
    Pipe p = make_pipe();
    const auto data = pattern(300 * 1024, 7);
    std::vector<uint8_t> got;
    auto t = reader(p.r.get(), got);
    auto r = write_all(p.w.get(), std::span<const uint8_t>(data));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    p.w.reset();
    t.join();
    EXPECT_EQ(got, data);
}

TEST(BaseIo, WaitsOnAFullNonBlockingFd) {
    Pipe p = make_pipe(O_NONBLOCK);
    const auto data = pattern(200 * 1024, 3);
    std::vector<uint8_t> got;
    // The reader starts late: the pipe fills and write gets EAGAIN.
    auto t = reader(p.r.get(), got, std::chrono::milliseconds(50));
    auto r = write_all(p.w.get(), std::span<const uint8_t>(data));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    p.w.reset();
    t.join();
    EXPECT_EQ(got, data);
}

TEST(BaseIo, WritesManyBuffersInOrder) {
    Pipe p = make_pipe(O_NONBLOCK);
    // More buffers than one writev takes, some empty, some larger than the pipe.
    std::vector<std::vector<uint8_t>> parts;
    std::vector<uint8_t> want;
    for (unsigned i = 0; i < IOV_MAX * 2 + 17; ++i) {
        parts.push_back(pattern(i % 5 == 0 ? 0 : (i % 97 == 0 ? 9000 : i % 37 + 1), i));
        want.insert(want.end(), parts.back().begin(), parts.back().end());
    }
    std::vector<std::span<uint8_t>> bufs(parts.begin(), parts.end());
    std::vector<uint8_t> got;
    auto t = reader(p.r.get(), got, std::chrono::milliseconds(20));
    auto r = write_all(p.w.get(), std::span<const std::span<uint8_t>>(bufs));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    p.w.reset();
    t.join();
    EXPECT_EQ(got, want);
}

TEST(BaseIo, ConstBufferListAndNothingToWrite) {
    Pipe p = make_pipe();
    const auto a = pattern(10, 1), b = pattern(5000, 2);
    const std::span<const uint8_t> bufs[] = {a, {}, b};
    std::vector<uint8_t> got;
    auto t = reader(p.r.get(), got);
    EXPECT_TRUE(write_all(p.w.get(), std::span<const std::span<const uint8_t>>(bufs)).has_value());
    EXPECT_TRUE(write_all(p.w.get(), std::span<const uint8_t>()).has_value());
    EXPECT_TRUE(write_all(p.w.get(), std::span<const std::span<const uint8_t>>()).has_value());
    p.w.reset();
    t.join();
    std::vector<uint8_t> want(a);
    want.insert(want.end(), b.begin(), b.end());
    EXPECT_EQ(got, want);
}

extern "C" void note_signal(int) {}

TEST(BaseIo, RetriesWritesInterruptedBySignals) {
    // A handler without SA_RESTART: a blocked write returns EINTR (or a
    // short count) when the signal arrives.
    struct sigaction sa {
    }, old{};
    sa.sa_handler = note_signal;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);

    Pipe p = make_pipe();
    const auto data = pattern(128 * 1024, 9);
    const pthread_t writer = ::pthread_self();
    std::vector<uint8_t> got;
    std::thread t([&] {
        for (int i = 0; i < 5; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            ::pthread_kill(writer, SIGUSR1);
        }
        uint8_t buf[4096];
        for (;;) {
            ssize_t n = ::read(p.r.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got.insert(got.end(), buf, buf + n);
        }
    });
    auto r = write_all(p.w.get(), std::span<const uint8_t>(data));
    p.w.reset();
    t.join();
    ::sigaction(SIGUSR1, &old, nullptr);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(got, data);
}

TEST(BaseIo, FailsWhenTheReaderIsGone) {
    struct sigaction ign {
    }, old{};
    ign.sa_handler = SIG_IGN;
    ASSERT_EQ(::sigaction(SIGPIPE, &ign, &old), 0);
    Pipe p = make_pipe();
    p.r.reset();
    const auto data = pattern(100, 0);
    auto r = write_all(p.w.get(), std::span<const uint8_t>(data));
    ::sigaction(SIGPIPE, &old, nullptr);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("Broken pipe"), std::string::npos) << r.error().message;
    EXPECT_FALSE(write_all(-1, std::span<const uint8_t>(data)).has_value());
}

}  // namespace
}  // namespace kvmsandbox
