// Request rates of the 9p server on its own, without a guest or a virtqueue:
// what one request costs us on top of the host syscalls it makes. Each
// benchmark replays pre-encoded T-messages against a share in a fresh
// temporary directory; items_per_second is requests per second.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "virtio/9p/server.h"
#include "virtio/9p/wire.h"

namespace kvmsandbox::p9 {
namespace {

constexpr uint32_t kRootFid = 0;
constexpr uint32_t kFileFid = 1;
constexpr uint32_t kWalkFid = 2;
// The server's default ceiling: large enough for a 128 KiB Tread in one reply.
constexpr uint32_t kMsize = 1024 * 1024;
constexpr size_t kFileSize = size_t{1024} * 1024;
constexpr const char* kFileName = "data";

// Encodes one T-message (empty if it does not fit, which the first expect()
// reports). The tag stays fixed: the server does not track tags, and a real
// client reuses a small set of them anyway.
template <typename Fill>
std::vector<uint8_t> encode(uint8_t type, Fill&& fill) {
    std::array<uint8_t, 512> buf{};
    Writer w(buf);
    w.begin(type, 1);
    fill(w);
    const size_t n = w.finish();
    return {buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n)};
}

// Position-dependent, non-zero file content: a read from a hole or from the
// wrong offset would not match it.
uint8_t content_at(uint64_t offset) {
    return static_cast<uint8_t>(offset * 31 + 7);
}

std::vector<uint8_t> tversion() {
    return encode(kTversion, [](Writer& w) {
        w.u32(kMsize);
        w.str("9P2000.L");
    });
}
std::vector<uint8_t> tattach(uint32_t fid) {
    return encode(kTattach, [&](Writer& w) {
        w.u32(fid);
        w.u32(kNoFid);
        w.str("bench");
        w.str("");
        w.u32(static_cast<uint32_t>(getuid()));
    });
}
std::vector<uint8_t> twalk1(uint32_t fid, uint32_t newfid, std::string_view name) {
    return encode(kTwalk, [&](Writer& w) {
        w.u32(fid);
        w.u32(newfid);
        w.u16(1);
        w.str(name);
    });
}
std::vector<uint8_t> tlopen(uint32_t fid, uint32_t flags) {
    return encode(kTlopen, [&](Writer& w) {
        w.u32(fid);
        w.u32(flags);
    });
}
std::vector<uint8_t> tclunk(uint32_t fid) {
    return encode(kTclunk, [&](Writer& w) { w.u32(fid); });
}
std::vector<uint8_t> tgetattr(uint32_t fid) {
    return encode(kTgetattr, [&](Writer& w) {
        w.u32(fid);
        w.u64(kGetattrBasic);
    });
}
std::vector<uint8_t> tread(uint32_t fid, uint64_t offset, uint32_t count) {
    return encode(kTread, [&](Writer& w) {
        w.u32(fid);
        w.u64(offset);
        w.u32(count);
    });
}

// A server on a temporary directory holding one kFileSize file, with the
// session negotiated and the root attached, as the Linux client leaves it
// after mount.
class Share {
  public:
    static Result<std::unique_ptr<Share>> create() {
        std::unique_ptr<Share> s(new Share());
        char tmpl[] = "/tmp/kvmsandbox_p9_bench.XXXXXX";
        if (!mkdtemp(tmpl)) return fail_errno("mkdtemp");
        s->dir_ = tmpl;

        const std::string path = s->dir_ + "/" + kFileName;
        UniqueFd file(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
        if (!file) return fail_errno("create " + path);
        std::vector<uint8_t> content(kFileSize);
        for (size_t i = 0; i < content.size(); ++i) content[i] = content_at(i);
        for (size_t done = 0; done < content.size();) {
            ssize_t n = write(file.get(), content.data() + done, content.size() - done);
            if (n < 0) return fail_errno("write " + path);
            done += static_cast<size_t>(n);
        }

        UniqueFd root(open(s->dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root) return fail_errno("open " + s->dir_);
        auto server = P9Server::create(std::move(root), false, P9Server::Options{});
        if (!server) return std::unexpected(server.error());
        s->server_ = std::move(*server);
        s->resp_.resize(kMsize);

        if (auto r = s->expect(tversion(), kRversion); !r) return std::unexpected(r.error());
        if (auto r = s->expect(tattach(kRootFid), kRattach); !r) return std::unexpected(r.error());
        return s;
    }

    ~Share() {
        server_.reset();
        std::error_code ec;
        if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    }
    Share(const Share&) = delete;
    Share& operator=(const Share&) = delete;

    // The hot path: the reply's type byte (0 if there was no reply), so the
    // loop can count failures without decoding anything.
    uint8_t send(std::span<const uint8_t> msg) {
        const size_t n = server_->handle(msg, resp_);
        return n >= kHeaderSize ? resp_[4] : 0;
    }

    // Sends msg and insists on reply type `want`: a benchmark that silently
    // measured Rlerror would report a meaningless, flattering rate.
    Result<void> expect(std::span<const uint8_t> msg, uint8_t want) {
        if (msg.size() < kHeaderSize) return fail("9p: request did not fit the encode buffer");
        const size_t n = server_->handle(msg, resp_);
        resp_len_ = n;
        auto h = parse_header(std::span<const uint8_t>(resp_).first(n), n, resp_.size());
        if (!h) return failf("9p: malformed reply ({} bytes)", n);
        if (h->type == kRlerror) {
            Reader r(std::span<const uint8_t>(resp_).subspan(kHeaderSize, n - kHeaderSize));
            return failf("9p: type {} answered Rlerror: {}", msg[4], std::strerror(r.u32()));
        }
        if (h->type != want) return failf("9p: type {} answered {}, not {}", msg[4], h->type, want);
        return {};
    }

    // The data of the last expect()ed reply, when it was an Rread.
    std::span<const uint8_t> last_read_data() const {
        const uint32_t count = load_le32(resp_.data() + kHeaderSize);
        if (resp_len_ < kReadHeaderSize || count != resp_len_ - kReadHeaderSize) return {};
        return std::span<const uint8_t>(resp_).subspan(kReadHeaderSize, count);
    }

  private:
    Share() = default;

    std::string dir_;
    std::unique_ptr<P9Server> server_;
    std::vector<uint8_t> resp_;
    size_t resp_len_ = 0;
};

std::unique_ptr<Share> open_share(benchmark::State& state) {
    auto s = Share::create();
    if (!s) {
        state.SkipWithError(s.error().message.c_str());
        return nullptr;
    }
    return std::move(*s);
}

void skip_on(benchmark::State& state, const Result<void>& r) {
    if (!r) state.SkipWithError(r.error().message.c_str());
}

void report_failures(benchmark::State& state, int64_t failures) {
    if (failures > 0) state.SkipWithError("a request in the timed loop answered an error");
}

// The cheapest full round trip: header parsing, fid lookup, one fstat.
void BM_P9Getattr(benchmark::State& state) {
    auto share = open_share(state);
    if (!share) return;
    const auto msg = tgetattr(kRootFid);
    skip_on(state, share->expect(msg, kRgetattr));
    if (state.error_occurred()) return;

    int64_t failures = 0;
    for (auto _ : state) failures += share->send(msg) != kRgetattr;
    report_failures(state, failures);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_P9Getattr);

// A path lookup as the guest's dcache misses cost it: a confined openat2 of
// one component, then closing the fid again. Two requests per iteration.
void BM_P9WalkClunk(benchmark::State& state) {
    auto share = open_share(state);
    if (!share) return;
    const auto walk = twalk1(kRootFid, kWalkFid, kFileName);
    const auto clunk = tclunk(kWalkFid);
    skip_on(state, share->expect(walk, kRwalk));
    if (!state.error_occurred()) skip_on(state, share->expect(clunk, kRclunk));
    if (state.error_occurred()) return;

    int64_t failures = 0;
    for (auto _ : state) {
        failures += share->send(walk) != kRwalk;
        failures += share->send(clunk) != kRclunk;
    }
    report_failures(state, failures);
    state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_P9WalkClunk);

// Sequential reads of range(0) bytes through the whole (page-cached) file,
// wrapping at its end, so the copy is not always of the same few cache lines.
void BM_P9Read(benchmark::State& state) {
    const auto count = static_cast<uint32_t>(state.range(0));
    auto share = open_share(state);
    if (!share) return;
    skip_on(state, share->expect(twalk1(kRootFid, kFileFid, kFileName), kRwalk));
    if (!state.error_occurred()) skip_on(state, share->expect(tlopen(kFileFid, 0), kRlopen));
    if (state.error_occurred()) return;

    std::vector<std::vector<uint8_t>> reads;
    for (uint64_t off = 0; off + count <= kFileSize; off += count)
        reads.push_back(tread(kFileFid, off, count));
    skip_on(state, share->expect(reads.front(), kRread));
    if (state.error_occurred()) return;
    // A short or wrong read would inflate bytes/s with bytes never copied.
    const auto data = share->last_read_data();
    bool intact = data.size() == count;
    for (size_t i = 0; intact && i < data.size(); ++i) intact = data[i] == content_at(i);
    if (!intact) {
        state.SkipWithError("the first Tread did not return the file's first bytes");
        return;
    }

    int64_t failures = 0;
    size_t next = 0;
    for (auto _ : state) {
        failures += share->send(reads[next]) != kRread;
        if (++next == reads.size()) next = 0;
    }
    report_failures(state, failures);
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(count));
}
BENCHMARK(BM_P9Read)->Arg(int64_t{4} * 1024)->Arg(int64_t{128} * 1024);

}  // namespace
}  // namespace kvmsandbox::p9
