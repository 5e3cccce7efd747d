#include "virtio/9p/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "virtio/9p/wire.h"

namespace kvmsandbox::p9 {
namespace {

namespace fs = std::filesystem;

struct Reply {
    uint8_t type = 0;
    uint16_t tag = 0;
    std::vector<uint8_t> body;

    bool is_error() const { return type == kRlerror; }
    uint32_t err() const {
        if (!is_error()) return 0;
        Reader r(body);
        return r.u32();
    }
    Reader reader() const { return Reader(body); }
};

// A minimal 9P2000.L client: encodes T-messages the way the Linux client
// does and decodes replies, checking the framing of every reply.
class Client {
  public:
    explicit Client(P9Server& s) : s_(s) {}

    Reply raw(std::span<const uint8_t> msg, size_t resp_size = 1 << 20) {
        std::vector<uint8_t> resp(resp_size);
        size_t n = s_.handle(msg, resp);
        EXPECT_LE(n, resp.size());
        Reply r;
        if (n == 0) return r;
        auto h = parse_header(std::span<const uint8_t>(resp).first(n), n, resp.size());
        EXPECT_TRUE(h.has_value());
        if (!h) return r;
        r.type = h->type;
        r.tag = h->tag;
        r.body.assign(resp.begin() + kHeaderSize, resp.begin() + n);
        return r;
    }

    std::vector<uint8_t> encode(uint8_t type, const std::function<void(Writer&)>& fill) {
        std::vector<uint8_t> buf(1 << 20);
        Writer w(buf);
        w.begin(type, ++tag_);
        fill(w);
        buf.resize(w.finish());
        return buf;
    }

    Reply call(uint8_t type, const std::function<void(Writer&)>& fill) {
        auto msg = encode(type, fill);
        Reply r = raw(msg);
        EXPECT_EQ(r.tag, tag_);
        if (!r.is_error()) {
            EXPECT_EQ(r.type, type + 1);
        }
        return r;
    }

    Reply version(uint32_t msize = 65536, std::string v = "9P2000.L") {
        return call(kTversion, [&](Writer& w) {
            w.u32(msize);
            w.str(v);
        });
    }
    Reply attach(uint32_t fid, std::string aname = "") {
        return call(kTattach, [&](Writer& w) {
            w.u32(fid);
            w.u32(kNoFid);
            w.str("user");
            w.str(aname);
            w.u32(1000);
        });
    }
    Reply walk(uint32_t fid, uint32_t newfid, const std::vector<std::string>& names) {
        return call(kTwalk, [&](Writer& w) {
            w.u32(fid);
            w.u32(newfid);
            w.u16(static_cast<uint16_t>(names.size()));
            for (const auto& n : names) w.str(n);
        });
    }
    Reply lopen(uint32_t fid, uint32_t flags) {
        return call(kTlopen, [&](Writer& w) {
            w.u32(fid);
            w.u32(flags);
        });
    }
    Reply lcreate(uint32_t fid, const std::string& name, uint32_t flags, uint32_t mode) {
        return call(kTlcreate, [&](Writer& w) {
            w.u32(fid);
            w.str(name);
            w.u32(flags);
            w.u32(mode);
            w.u32(0);
        });
    }
    Reply read(uint32_t fid, uint64_t off, uint32_t count) {
        return call(kTread, [&](Writer& w) {
            w.u32(fid);
            w.u64(off);
            w.u32(count);
        });
    }
    Reply write(uint32_t fid, uint64_t off, std::string_view data) {
        return call(kTwrite, [&](Writer& w) {
            w.u32(fid);
            w.u64(off);
            w.u32(static_cast<uint32_t>(data.size()));
            w.bytes({reinterpret_cast<const uint8_t*>(data.data()), data.size()});
        });
    }
    Reply clunk(uint32_t fid) {
        return call(kTclunk, [&](Writer& w) { w.u32(fid); });
    }
    Reply remove(uint32_t fid) {
        return call(kTremove, [&](Writer& w) { w.u32(fid); });
    }
    Reply getattr(uint32_t fid) {
        return call(kTgetattr, [&](Writer& w) {
            w.u32(fid);
            w.u64(kGetattrBasic);
        });
    }
    Reply setattr(uint32_t fid, uint32_t valid, uint32_t mode, uint64_t size, uint64_t mtime_sec,
                  uint64_t mtime_nsec, uint32_t uid = 0, uint32_t gid = 0) {
        return call(kTsetattr, [&](Writer& w) {
            w.u32(fid);
            w.u32(valid);
            w.u32(mode);
            w.u32(uid);
            w.u32(gid);
            w.u64(size);
            w.u64(0);
            w.u64(0);
            w.u64(mtime_sec);
            w.u64(mtime_nsec);
        });
    }
    // Tsetattr of the times only, the way v9fs_vfs_setattr_dotl sends them.
    Reply set_times(uint32_t fid, uint32_t valid, uint64_t atime_sec, uint64_t atime_nsec,
                    uint64_t mtime_sec, uint64_t mtime_nsec) {
        return call(kTsetattr, [&](Writer& w) {
            w.u32(fid);
            w.u32(valid);
            w.u32(0);  // mode
            w.u32(0);  // uid
            w.u32(0);  // gid
            w.u64(0);  // size
            w.u64(atime_sec);
            w.u64(atime_nsec);
            w.u64(mtime_sec);
            w.u64(mtime_nsec);
        });
    }
    Reply readdir(uint32_t fid, uint64_t off, uint32_t count) {
        return call(kTreaddir, [&](Writer& w) {
            w.u32(fid);
            w.u64(off);
            w.u32(count);
        });
    }
    Reply mkdir(uint32_t dfid, const std::string& name, uint32_t mode = 0755) {
        return call(kTmkdir, [&](Writer& w) {
            w.u32(dfid);
            w.str(name);
            w.u32(mode);
            w.u32(0);
        });
    }
    Reply symlink(uint32_t dfid, const std::string& name, const std::string& target) {
        return call(kTsymlink, [&](Writer& w) {
            w.u32(dfid);
            w.str(name);
            w.str(target);
            w.u32(0);
        });
    }
    Reply mknod(uint32_t dfid, const std::string& name, uint32_t mode) {
        return call(kTmknod, [&](Writer& w) {
            w.u32(dfid);
            w.str(name);
            w.u32(mode);
            w.u32(1);
            w.u32(3);
            w.u32(0);
        });
    }
    Reply link(uint32_t dfid, uint32_t fid, const std::string& name) {
        return call(kTlink, [&](Writer& w) {
            w.u32(dfid);
            w.u32(fid);
            w.str(name);
        });
    }
    Reply rename(uint32_t fid, uint32_t dfid, const std::string& name) {
        return call(kTrename, [&](Writer& w) {
            w.u32(fid);
            w.u32(dfid);
            w.str(name);
        });
    }
    Reply renameat(uint32_t od, const std::string& on, uint32_t nd, const std::string& nn) {
        return call(kTrenameat, [&](Writer& w) {
            w.u32(od);
            w.str(on);
            w.u32(nd);
            w.str(nn);
        });
    }
    Reply unlinkat(uint32_t dfid, const std::string& name, uint32_t flags) {
        return call(kTunlinkat, [&](Writer& w) {
            w.u32(dfid);
            w.str(name);
            w.u32(flags);
        });
    }
    Reply readlink(uint32_t fid) {
        return call(kTreadlink, [&](Writer& w) { w.u32(fid); });
    }
    Reply statfs(uint32_t fid) {
        return call(kTstatfs, [&](Writer& w) { w.u32(fid); });
    }
    Reply fsync(uint32_t fid) {
        return call(kTfsync, [&](Writer& w) {
            w.u32(fid);
            w.u32(0);
        });
    }
    Reply lock(uint32_t fid, uint8_t type, uint64_t start, uint64_t len) {
        return call(kTlock, [&](Writer& w) {
            w.u32(fid);
            w.u8(type);
            w.u32(0);
            w.u64(start);
            w.u64(len);
            w.u32(123);
            w.str("guest");
        });
    }
    Reply getlock(uint32_t fid, uint8_t type, uint64_t start, uint64_t len) {
        return call(kTgetlock, [&](Writer& w) {
            w.u32(fid);
            w.u8(type);
            w.u64(start);
            w.u64(len);
            w.u32(123);
            w.str("guest");
        });
    }
    Reply xattrwalk(uint32_t fid, uint32_t newfid, const std::string& name) {
        return call(kTxattrwalk, [&](Writer& w) {
            w.u32(fid);
            w.u32(newfid);
            w.str(name);
        });
    }
    Reply xattrcreate(uint32_t fid, const std::string& name, uint64_t size, uint32_t flags) {
        return call(kTxattrcreate, [&](Writer& w) {
            w.u32(fid);
            w.str(name);
            w.u64(size);
            w.u32(flags);
        });
    }

    // Decoders.
    static Qid qid_of(const Reply& r) {
        Reader rd = r.reader();
        return rd.qid();
    }
    static std::vector<Qid> walk_qids(const Reply& r) {
        Reader rd = r.reader();
        std::vector<Qid> q(rd.u16());
        for (auto& x : q) x = rd.qid();
        EXPECT_TRUE(rd.ok());
        return q;
    }
    static std::string read_data(const Reply& r) {
        Reader rd = r.reader();
        uint32_t n = rd.u32();
        auto b = rd.bytes(n);
        EXPECT_TRUE(rd.ok());
        EXPECT_EQ(rd.remaining(), 0u);
        return {reinterpret_cast<const char*>(b.data()), b.size()};
    }

  private:
    P9Server& s_;
    uint16_t tag_ = 0;
};

struct Attr {
    Qid qid;
    uint32_t mode, uid, gid;
    uint64_t nlink, rdev, size, blksize, blocks;
    uint64_t atime, atime_ns, mtime, mtime_ns, ctime, ctime_ns;
};

Attr decode_attr(const Reply& r) {
    Reader rd = r.reader();
    Attr a{};
    EXPECT_EQ(rd.u64(), kGetattrBasic);
    a.qid = rd.qid();
    a.mode = rd.u32();
    a.uid = rd.u32();
    a.gid = rd.u32();
    a.nlink = rd.u64();
    a.rdev = rd.u64();
    a.size = rd.u64();
    a.blksize = rd.u64();
    a.blocks = rd.u64();
    a.atime = rd.u64();
    a.atime_ns = rd.u64();
    a.mtime = rd.u64();
    a.mtime_ns = rd.u64();
    a.ctime = rd.u64();
    a.ctime_ns = rd.u64();
    for (int i = 0; i < 4; ++i) rd.u64();
    EXPECT_TRUE(rd.ok());
    EXPECT_EQ(rd.remaining(), 0u);
    return a;
}

constexpr uint32_t kRoot = 0;

class P9ServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/p9_server_test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        base_ = tmpl;
        // The share is a subdirectory so that escapes have somewhere to go.
        root_ = base_ / "share";
        fs::create_directory(root_);
        std::ofstream(base_ / "outside_secret") << "secret";
        start(false);
    }
    void TearDown() override {
        client_.reset();
        server_.reset();
        std::error_code ec;
        fs::permissions(base_, fs::perms::owner_all, ec);
        fs::remove_all(base_, ec);
    }

    void start(bool read_only, P9Server::Options opts = {}) {
        client_.reset();
        server_.reset();
        int fd = open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        opts.share_name = "share";
        auto s = P9Server::create(UniqueFd(fd), read_only, opts);
        ASSERT_TRUE(s.has_value()) << s.error().message;
        server_ = std::move(*s);
        client_ = std::make_unique<Client>(*server_);
        auto v = client_->version();
        ASSERT_FALSE(v.is_error());
        auto a = client_->attach(kRoot);
        ASSERT_FALSE(a.is_error()) << a.err();
        root_qid_ = Client::qid_of(a);
    }

    void write_host(const std::string& rel, const std::string& data) {
        std::ofstream(root_ / rel, std::ios::binary) << data;
    }
    std::string read_host(const fs::path& p) {
        std::ifstream f(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(f), {}};
    }

    Client& c() { return *client_; }

    fs::path base_, root_;
    std::unique_ptr<P9Server> server_;
    std::unique_ptr<Client> client_;
    Qid root_qid_;
};

TEST_F(P9ServerTest, VersionNegotiatesMsize) {
    auto r = c().version(1 << 30);
    ASSERT_FALSE(r.is_error());
    Reader rd = r.reader();
    EXPECT_EQ(rd.u32(), P9Server::Options{}.max_msize);
    EXPECT_EQ(rd.str(64), "9P2000.L");

    r = c().version(8192);
    rd = r.reader();
    EXPECT_EQ(rd.u32(), 8192u);
    EXPECT_EQ(server_->msize(), 8192u);

    // Tversion starts a new session: the old root fid is gone.
    EXPECT_EQ(c().getattr(kRoot).err(), static_cast<uint32_t>(EBADF));

    r = c().version(8192, "9P2000.u");
    ASSERT_FALSE(r.is_error());
    rd = r.reader();
    rd.u32();
    EXPECT_EQ(rd.str(64), "unknown");
    // Not negotiated: everything else is refused.
    EXPECT_EQ(c().attach(1).err(), static_cast<uint32_t>(EPROTO));

    EXPECT_EQ(c().version(100).err(), static_cast<uint32_t>(EINVAL));
}

TEST_F(P9ServerTest, AuthIsNotSupported) {
    auto r = c().call(kTauth, [](Writer& w) {
        w.u32(5);
        w.str("u");
        w.str("");
        w.u32(0);
    });
    EXPECT_EQ(r.err(), static_cast<uint32_t>(EOPNOTSUPP));
    // attach with an afid that never authenticated.
    r = c().call(kTattach, [](Writer& w) {
        w.u32(6);
        w.u32(5);
        w.str("u");
        w.str("");
        w.u32(0);
    });
    EXPECT_EQ(r.err(), static_cast<uint32_t>(EINVAL));
}

TEST_F(P9ServerTest, FlushAnswersRflush) {
    auto r = c().call(kTflush, [](Writer& w) { w.u16(3); });
    EXPECT_FALSE(r.is_error());
    EXPECT_TRUE(r.body.empty());
}

TEST_F(P9ServerTest, UnknownTypeIsError) {
    for (uint8_t t : {uint8_t{0}, uint8_t{kTlerror}, uint8_t{kRwalk}, uint8_t{200}, uint8_t{255}}) {
        auto r = c().call(t, [](Writer& w) { w.u32(0); });
        EXPECT_EQ(r.err(), static_cast<uint32_t>(EOPNOTSUPP)) << int(t);
    }
}

TEST_F(P9ServerTest, FullFlowWalkOpenReadWriteClunk) {
    fs::create_directories(root_ / "dir");
    write_host("dir/file.txt", "hello world");

    auto w = c().walk(kRoot, 1, {"dir", "file.txt"});
    ASSERT_FALSE(w.is_error()) << w.err();
    auto qids = Client::walk_qids(w);
    ASSERT_EQ(qids.size(), 2u);
    EXPECT_EQ(qids[0].type, kQtDir);
    EXPECT_EQ(qids[1].type, kQtFile);

    auto o = c().lopen(1, kDotlRdwr);
    ASSERT_FALSE(o.is_error()) << o.err();
    EXPECT_EQ(Client::qid_of(o), qids[1]);

    auto r = c().read(1, 0, 100);
    ASSERT_FALSE(r.is_error());
    EXPECT_EQ(Client::read_data(r), "hello world");
    r = c().read(1, 6, 3);
    EXPECT_EQ(Client::read_data(r), "wor");
    r = c().read(1, 1000, 10);
    EXPECT_EQ(Client::read_data(r), "");

    auto wr = c().write(1, 6, "WORLD!");
    ASSERT_FALSE(wr.is_error()) << wr.err();
    EXPECT_EQ(wr.reader().u32(), 6u);
    EXPECT_EQ(read_host(root_ / "dir/file.txt"), "hello WORLD!");

    EXPECT_FALSE(c().clunk(1).is_error());
    // The fid is gone after clunk; reusing it is an error.
    EXPECT_EQ(c().read(1, 0, 10).err(), static_cast<uint32_t>(EBADF));
    EXPECT_EQ(c().clunk(1).err(), static_cast<uint32_t>(EBADF));
    // And it can be used again for a new walk.
    EXPECT_FALSE(c().walk(kRoot, 1, {"dir"}).is_error());
}

TEST_F(P9ServerTest, ReadCountCappedByMsize) {
    write_host("big", std::string(100000, 'x'));
    ASSERT_FALSE(c().version(8192).is_error());
    ASSERT_FALSE(c().attach(kRoot).is_error());
    ASSERT_FALSE(c().walk(kRoot, 1, {"big"}).is_error());
    ASSERT_FALSE(c().lopen(1, 0).is_error());
    auto r = c().read(1, 0, 1 << 30);
    ASSERT_FALSE(r.is_error());
    EXPECT_EQ(Client::read_data(r).size(), 8192u - kReadHeaderSize);
}

TEST_F(P9ServerTest, WalkZeroNamesClonesAndPartialWalk) {
    fs::create_directories(root_ / "a");
    auto w = c().walk(kRoot, 1, {});
    ASSERT_FALSE(w.is_error());
    EXPECT_TRUE(Client::walk_qids(w).empty());
    // Getattr's qid follows the valid mask.
    EXPECT_EQ(decode_attr(c().getattr(1)).qid, root_qid_);

    // First element missing: error.
    EXPECT_EQ(c().walk(kRoot, 2, {"missing"}).err(), static_cast<uint32_t>(ENOENT));
    // Later element missing: partial Rwalk, no fid created.
    w = c().walk(kRoot, 2, {"a", "missing"});
    ASSERT_FALSE(w.is_error());
    EXPECT_EQ(Client::walk_qids(w).size(), 1u);
    EXPECT_EQ(c().getattr(2).err(), static_cast<uint32_t>(EBADF));

    // newfid in use.
    EXPECT_EQ(c().walk(kRoot, 1, {"a"}).err(), static_cast<uint32_t>(EEXIST));
    // walk onto itself replaces the fid.
    w = c().walk(1, 1, {"a"});
    ASSERT_FALSE(w.is_error());
    EXPECT_EQ(decode_attr(c().getattr(1)).qid.type, kQtDir);
    // More than 16 names.
    std::vector<std::string> many(17, "a");
    EXPECT_EQ(c().walk(kRoot, 3, many).err(), static_cast<uint32_t>(EINVAL));
    // "." is a no-op.
    w = c().walk(kRoot, 3, {".", "a", "."});
    ASSERT_FALSE(w.is_error());
    EXPECT_EQ(Client::walk_qids(w).size(), 3u);
}

TEST_F(P9ServerTest, LcreateMkdirGetattr) {
    auto w = c().walk(kRoot, 1, {});
    ASSERT_FALSE(w.is_error());
    auto cr = c().lcreate(1, "new.txt", kDotlRdwr | kDotlCreate, 0640);
    ASSERT_FALSE(cr.is_error()) << cr.err();
    EXPECT_EQ(Client::qid_of(cr).type, kQtFile);
    ASSERT_FALSE(c().write(1, 0, "created").is_error());
    EXPECT_EQ(Client::read_data(c().read(1, 0, 100)), "created");
    auto a = decode_attr(c().getattr(1));
    EXPECT_EQ(a.mode, S_IFREG | 0640u);  // exact mode: our umask does not apply
    EXPECT_EQ(a.size, 7u);
    EXPECT_EQ(a.uid, getuid());
    EXPECT_EQ(read_host(root_ / "new.txt"), "created");
    EXPECT_FALSE(c().clunk(1).is_error());

    // Exclusive create of an existing file.
    ASSERT_FALSE(c().walk(kRoot, 1, {}).is_error());
    EXPECT_EQ(c().lcreate(1, "new.txt", kDotlRdwr | kDotlCreate | kDotlExcl, 0640).err(),
              static_cast<uint32_t>(EEXIST));
    // Set-uid is never created.
    auto cr2 = c().lcreate(1, "suid", kDotlRdwr | kDotlCreate, 04755);
    ASSERT_FALSE(cr2.is_error());
    struct stat st {};
    ASSERT_EQ(stat((root_ / "suid").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);

    auto md = c().mkdir(kRoot, "sub", 0751);
    ASSERT_FALSE(md.is_error()) << md.err();
    EXPECT_EQ(Client::qid_of(md).type, kQtDir);
    ASSERT_EQ(stat((root_ / "sub").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0751u);
    EXPECT_EQ(c().mkdir(kRoot, "sub").err(), static_cast<uint32_t>(EEXIST));
}

TEST_F(P9ServerTest, HiddenPathsAreInvisibleEvenThroughHardLinks) {
    fs::create_directories(root_ / "ssh");
    write_host("shadow", "root:$6$hash");
    write_host("ssh/host_key", "PRIVATE");
    write_host("passwd", "root:x:0:0");
    P9Server::Options opts;
    opts.hidden = {"shadow", "ssh/host_key", "does/not/exist"};
    start(true, opts);
    EXPECT_EQ(c().walk(kRoot, 1, {"shadow"}).err(), static_cast<uint32_t>(ENOENT));
    EXPECT_EQ(c().walk(kRoot, 1, {"ssh", "host_key"}).err(), 0u);  // partial walk: no error...
    EXPECT_FALSE(server_->fid_count() > 1);                        // ...and no new fid
    ASSERT_FALSE(c().walk(kRoot, 2, {"passwd"}).is_error());

    ASSERT_FALSE(c().walk(kRoot, 3, {}).is_error());
    ASSERT_FALSE(c().lopen(3, kDotlDirectory).is_error());
    auto r = c().readdir(3, 0, 8192);
    ASSERT_FALSE(r.is_error());
    Reader rd = r.reader();
    uint32_t count = rd.u32();
    std::set<std::string> names;
    while (rd.ok() && rd.remaining() > 0 && count > 0) {
        rd.qid();
        rd.u64();
        rd.u8();
        names.insert(std::string(rd.str(255)));
    }
    EXPECT_TRUE(names.count("passwd"));
    EXPECT_TRUE(names.count("ssh"));
    EXPECT_FALSE(names.count("shadow"));

    // A hard link made on the host (the guest cannot: the share is
    // read-only) is the same inode, so it stays hidden too.
    ASSERT_EQ(::link((root_ / "shadow").c_str(), (root_ / "copy").c_str()), 0);
    EXPECT_EQ(c().walk(kRoot, 4, {"copy"}).err(), static_cast<uint32_t>(ENOENT));
}

// The host's system directories as a root-run VM serves them: whatever we may
// read, the guest sees only what an unprivileged host user could (others' r
// on an entry, others' x on each directory walked through). These tests run
// as root here, which is exactly the case that matters.
class P9WorldReadableTest : public P9ServerTest {
  protected:
    void SetUp() override {
        P9ServerTest::SetUp();
        auto file = [&](const std::string& rel, mode_t mode) {
            write_host(rel, "data of " + rel);
            ASSERT_EQ(::chmod((root_ / rel).c_str(), mode), 0);
        };
        auto dir = [&](const std::string& rel, mode_t mode) {
            fs::create_directories(root_ / rel);
            ASSERT_EQ(::chmod((root_ / rel).c_str(), mode), 0);
        };
        ASSERT_EQ(::chmod(root_.c_str(), 0755), 0);
        file("pub", 0644);
        file("priv", 0600);  // say /etc/wireguard/wg0.conf
        file("group_only", 0640);
        // A hard link is the same inode with the same mode: hidden as well.
        ASSERT_EQ(::link((root_ / "priv").c_str(), (root_ / "priv_link").c_str()), 0);
        fs::create_symlink("priv", root_ / "lnk");  // shown as a link; its target is not
        dir("closed", 0700);
        file("closed/inner", 0644);
        dir("closed/open", 0755);  // readable, but under a 0700 parent
        file("closed/open/g", 0644);
        dir("xonly", 0711);  // searchable, not readable: itself invisible
        file("xonly/f", 0644);
        dir("open", 0755);
        file("open/h", 0644);
        file("open/secret", 0600);
        dir("noexec", 0744);  // readable, not searchable: nothing inside reachable
        file("noexec/n", 0644);
    }
    void start_rule(bool rule) {
        P9Server::Options opts;
        opts.world_readable_only = rule;
        start(true, opts);
    }
    std::set<std::string> list(uint32_t dir_fid, const std::vector<std::string>& path) {
        std::set<std::string> names;
        EXPECT_FALSE(c().walk(kRoot, dir_fid, path).is_error());
        EXPECT_FALSE(c().lopen(dir_fid, kDotlDirectory).is_error());
        auto r = c().readdir(dir_fid, 0, 8192);
        EXPECT_FALSE(r.is_error()) << r.err();
        Reader rd = r.reader();
        uint32_t count = rd.u32();
        while (rd.ok() && rd.remaining() > 0 && count > 0) {
            rd.qid();
            rd.u64();
            rd.u8();
            names.insert(std::string(rd.str(255)));
        }
        c().clunk(dir_fid);
        return names;
    }
    uint32_t walk_err(const std::vector<std::string>& path) {
        auto w = c().walk(kRoot, 99, path);
        if (!w.is_error()) {
            if (Client::walk_qids(w).size() == path.size()) {
                c().clunk(99);
                return 0;
            }
            return ENOENT;  // a partial walk: the guest's kernel reports ENOENT
        }
        return w.err();
    }
    std::string read_all(const std::vector<std::string>& path) {
        EXPECT_FALSE(c().walk(kRoot, 98, path).is_error());
        EXPECT_FALSE(c().lopen(98, 0).is_error());
        auto r = c().read(98, 0, 4096);
        c().clunk(98);
        return Client::read_data(r);
    }
};

TEST_F(P9WorldReadableTest, OnlyWhatOthersCouldReadIsVisible) {
    start_rule(true);
    EXPECT_EQ(read_all({"pub"}), "data of pub");
    EXPECT_EQ(read_all({"open", "h"}), "data of open/h");
    for (const std::vector<std::string>& p :
         std::vector<std::vector<std::string>>{{"priv"},
                                               {"priv_link"},
                                               {"group_only"},
                                               {"closed"},
                                               {"closed", "inner"},
                                               {"closed", "open"},
                                               {"closed", "open", "g"},
                                               {"xonly"},
                                               {"xonly", "f"},
                                               {"open", "secret"},
                                               {"noexec", "n"}})
        EXPECT_EQ(walk_err(p), static_cast<uint32_t>(ENOENT)) << p.back();
    // A first step that fails is an Rlerror(ENOENT) and makes no fid.
    const size_t fids = server_->fid_count();
    EXPECT_EQ(c().walk(kRoot, 1, {"priv"}).err(), static_cast<uint32_t>(ENOENT));
    EXPECT_EQ(server_->fid_count(), fids);
    // The symlink itself is visible (a link's mode means nothing); the guest
    // resolves it to "priv", which is checked on its own walk.
    EXPECT_EQ(walk_err({"lnk"}), 0u);
    // A readable directory without o+x is visible but empty.
    EXPECT_EQ(walk_err({"noexec"}), 0u);
    // ".." from a visible directory lands on the root again.
    EXPECT_EQ(walk_err({"open", "..", "pub"}), 0u);

    EXPECT_EQ(list(2, {}), (std::set<std::string>{".", "..", "pub", "lnk", "open", "noexec"}));
    EXPECT_EQ(list(3, {"open"}), (std::set<std::string>{".", "..", "h"}));
    EXPECT_EQ(list(4, {"noexec"}), (std::set<std::string>{".", ".."}));
}

TEST_F(P9WorldReadableTest, WithoutTheRuleTheSameTreeIsFullyVisible) {
    start_rule(false);
    for (const std::vector<std::string>& p : std::vector<std::vector<std::string>>{
             {"priv"}, {"priv_link"}, {"closed", "open", "g"}, {"xonly", "f"}, {"noexec", "n"}})
        EXPECT_EQ(walk_err(p), 0u) << p.back();
    EXPECT_EQ(read_all({"priv"}), "data of priv");  // we run as root here
    EXPECT_EQ(list(2, {}),
              (std::set<std::string>{".", "..", "pub", "priv", "group_only", "priv_link", "lnk",
                                     "closed", "xonly", "open", "noexec"}));
}

TEST_F(P9WorldReadableTest, HiddenListStillAppliesUnderTheRule) {
    P9Server::Options opts;
    opts.world_readable_only = true;
    opts.hidden = {"pub"};  // world-readable, but named as a secret
    start(true, opts);
    EXPECT_EQ(walk_err({"pub"}), static_cast<uint32_t>(ENOENT));
    EXPECT_FALSE(list(2, {}).count("pub"));
    EXPECT_EQ(walk_err({"open", "h"}), 0u);
}

TEST_F(P9ServerTest, ReaddirThousandEntriesAcrossCalls) {
    fs::create_directories(root_ / "many");
    std::set<std::string> want;
    for (int i = 0; i < 1000; ++i) {
        std::string n = "entry_" + std::to_string(i);
        std::ofstream(root_ / "many" / n) << i;
        want.insert(n);
    }
    want.insert(".");
    want.insert("..");
    ASSERT_FALSE(c().walk(kRoot, 1, {"many"}).is_error());
    ASSERT_FALSE(c().lopen(1, kDotlDirectory).is_error());

    std::set<std::string> got;
    uint64_t offset = 0;
    int calls = 0;
    for (;;) {
        auto r = c().readdir(1, offset, 2000);
        ASSERT_FALSE(r.is_error()) << r.err();
        Reader rd = r.reader();
        uint32_t count = rd.u32();
        ASSERT_LE(count, 2000u);
        ASSERT_EQ(rd.remaining(), count);
        if (count == 0) break;
        ++calls;
        while (rd.remaining() > 0) {
            Qid q = rd.qid();
            offset = rd.u64();
            uint8_t type = rd.u8();
            std::string name(rd.str(255));
            ASSERT_TRUE(rd.ok());
            EXPECT_TRUE(got.insert(name).second) << "duplicate " << name;
            if (name.starts_with("entry_")) {
                EXPECT_EQ(q.type, kQtFile);
                EXPECT_EQ(type, DT_REG);
            }
        }
        ASSERT_LT(calls, 1000);
    }
    EXPECT_GT(calls, 5);
    EXPECT_EQ(got, want);

    // Restarting at offset 0 gives the first entries again.
    auto r = c().readdir(1, 0, 100);
    EXPECT_GT(r.reader().u32(), 0u);
    // A count too small for any entry is an error, not "end of directory".
    EXPECT_EQ(c().readdir(1, 0, 10).err(), static_cast<uint32_t>(EINVAL));
    // Readdir needs an opened directory.
    ASSERT_FALSE(c().walk(kRoot, 2, {"many"}).is_error());
    EXPECT_EQ(c().readdir(2, 0, 1000).err(), static_cast<uint32_t>(EBADF));
}

TEST_F(P9ServerTest, RenameAndRenameat) {
    fs::create_directories(root_ / "d1");
    fs::create_directories(root_ / "d2");
    write_host("d1/f", "data");
    ASSERT_FALSE(c().walk(kRoot, 1, {"d1"}).is_error());
    ASSERT_FALSE(c().walk(kRoot, 2, {"d2"}).is_error());
    auto r = c().renameat(1, "f", 2, "g");
    ASSERT_FALSE(r.is_error()) << r.err();
    EXPECT_FALSE(fs::exists(root_ / "d1/f"));
    EXPECT_EQ(read_host(root_ / "d2/g"), "data");

    ASSERT_FALSE(c().walk(2, 3, {"g"}).is_error());
    r = c().rename(3, 1, "h");
    ASSERT_FALSE(r.is_error()) << r.err();
    EXPECT_EQ(read_host(root_ / "d1/h"), "data");
    // The fid follows its file: a second rename works from the new place.
    ASSERT_FALSE(c().rename(3, kRoot, "top").is_error());
    EXPECT_EQ(read_host(root_ / "top"), "data");

    EXPECT_EQ(c().renameat(1, "missing", 2, "x").err(), static_cast<uint32_t>(ENOENT));
    // Renaming the root is refused.
    EXPECT_NE(c().rename(kRoot, 1, "root").err(), 0u);
}

TEST_F(P9ServerTest, UnlinkatFilesAndDirectories) {
    fs::create_directories(root_ / "dir/sub");
    write_host("dir/f", "x");
    ASSERT_FALSE(c().walk(kRoot, 1, {"dir"}).is_error());
    EXPECT_FALSE(c().unlinkat(1, "f", 0).is_error());
    EXPECT_FALSE(fs::exists(root_ / "dir/f"));
    EXPECT_EQ(c().unlinkat(1, "sub", 0).err(), static_cast<uint32_t>(EISDIR));
    EXPECT_FALSE(c().unlinkat(1, "sub", kUnlinkRemoveDir).is_error());
    EXPECT_FALSE(fs::exists(root_ / "dir/sub"));
    EXPECT_EQ(c().unlinkat(1, "gone", 0).err(), static_cast<uint32_t>(ENOENT));
    EXPECT_EQ(c().unlinkat(1, "x", 0x1234).err(), static_cast<uint32_t>(EINVAL));
}

TEST_F(P9ServerTest, RemoveClunksTheFid) {
    write_host("victim", "x");
    ASSERT_FALSE(c().walk(kRoot, 1, {"victim"}).is_error());
    EXPECT_FALSE(c().remove(1).is_error());
    EXPECT_FALSE(fs::exists(root_ / "victim"));
    EXPECT_EQ(c().getattr(1).err(), static_cast<uint32_t>(EBADF));
    // The root cannot be removed, and the fid is clunked anyway.
    ASSERT_FALSE(c().walk(kRoot, 2, {}).is_error());
    EXPECT_NE(c().remove(2).err(), 0u);
    EXPECT_EQ(c().getattr(2).err(), static_cast<uint32_t>(EBADF));
    EXPECT_TRUE(fs::exists(root_));
}

TEST_F(P9ServerTest, HardLink) {
    write_host("orig", "linked");
    ASSERT_FALSE(c().walk(kRoot, 1, {"orig"}).is_error());
    auto r = c().link(kRoot, 1, "copy");
    ASSERT_FALSE(r.is_error()) << r.err();
    EXPECT_EQ(read_host(root_ / "copy"), "linked");
    EXPECT_EQ(decode_attr(c().getattr(1)).nlink, 2u);
    // Directories cannot be hard linked.
    fs::create_directories(root_ / "d");
    ASSERT_FALSE(c().walk(kRoot, 2, {"d"}).is_error());
    EXPECT_EQ(c().link(kRoot, 2, "dlink").err(), static_cast<uint32_t>(EPERM));
}

TEST_F(P9ServerTest, SymlinkAndReadlink) {
    auto r = c().symlink(kRoot, "ln", "some/target/../x");
    ASSERT_FALSE(r.is_error()) << r.err();
    EXPECT_EQ(Client::qid_of(r).type, kQtSymlink);
    EXPECT_EQ(fs::read_symlink(root_ / "ln"), "some/target/../x");
    ASSERT_FALSE(c().walk(kRoot, 1, {"ln"}).is_error());
    auto rl = c().readlink(1);
    ASSERT_FALSE(rl.is_error()) << rl.err();
    EXPECT_EQ(rl.reader().str(4096), "some/target/../x");
    EXPECT_EQ(c().readlink(kRoot).err(), static_cast<uint32_t>(EINVAL));
    EXPECT_EQ(c().symlink(kRoot, "ln", "x").err(), static_cast<uint32_t>(EEXIST));
    EXPECT_EQ(decode_attr(c().getattr(1)).mode & S_IFMT, static_cast<uint32_t>(S_IFLNK));
}

TEST_F(P9ServerTest, MknodOnlyRegularFifoSocket) {
    auto r = c().mknod(kRoot, "fifo", S_IFIFO | 0600);
    ASSERT_FALSE(r.is_error()) << r.err();
    struct stat st {};
    ASSERT_EQ(lstat((root_ / "fifo").c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    EXPECT_FALSE(c().mknod(kRoot, "reg", S_IFREG | 0600).is_error());
    EXPECT_EQ(c().mknod(kRoot, "chr", S_IFCHR | 0600).err(), static_cast<uint32_t>(EPERM));
    EXPECT_EQ(c().mknod(kRoot, "blk", S_IFBLK | 0600).err(), static_cast<uint32_t>(EPERM));
    EXPECT_FALSE(fs::exists(root_ / "chr"));
    // A fifo is never opened on the host (it could block a worker forever).
    ASSERT_FALSE(c().walk(kRoot, 1, {"fifo"}).is_error());
    EXPECT_EQ(c().lopen(1, 0).err(), static_cast<uint32_t>(ENXIO));
}

TEST_F(P9ServerTest, SetattrChmodTruncateTimes) {
    write_host("f", "0123456789");
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());

    ASSERT_FALSE(c().setattr(1, kSetattrMode, 0600, 0, 0, 0).is_error());
    EXPECT_EQ(decode_attr(c().getattr(1)).mode & 07777, 0600u);
    // Set-uid is dropped.
    ASSERT_FALSE(c().setattr(1, kSetattrMode, 04711, 0, 0, 0).is_error());
    EXPECT_EQ(decode_attr(c().getattr(1)).mode & 07777, 0711u);
    ASSERT_FALSE(c().setattr(1, kSetattrMode, 0644, 0, 0, 0).is_error());

    ASSERT_FALSE(c().setattr(1, kSetattrSize, 0, 4, 0, 0).is_error());
    EXPECT_EQ(read_host(root_ / "f"), "0123");
    ASSERT_FALSE(c().setattr(1, kSetattrSize, 0, 6, 0, 0).is_error());
    EXPECT_EQ(fs::file_size(root_ / "f"), 6u);

    ASSERT_FALSE(
        c().setattr(1, kSetattrMtime | kSetattrMtimeSet, 0, 0, 1000000000, 123).is_error());
    auto a = decode_attr(c().getattr(1));
    EXPECT_EQ(a.mtime, 1000000000u);
    EXPECT_EQ(a.mtime_ns, 123u);
    // MTIME without MTIME_SET: now.
    ASSERT_FALSE(c().setattr(1, kSetattrMtime, 0, 0, 0, 0).is_error());
    EXPECT_GT(decode_attr(c().getattr(1)).mtime, 1600000000u);
    EXPECT_EQ(c().setattr(1, kSetattrMtime | kSetattrMtimeSet, 0, 0, 1, 2000000000).err(),
              static_cast<uint32_t>(EINVAL));

    // chown to ourselves is allowed; errors of other values pass through.
    EXPECT_FALSE(
        c().setattr(1, kSetattrUid | kSetattrGid, 0, 0, 0, 0, getuid(), getgid()).is_error());
    if (getuid() != 0) {
        EXPECT_EQ(c().setattr(1, kSetattrUid, 0, 0, 0, 0, 0).err(), static_cast<uint32_t>(EPERM));
    }
    // Truncating a directory.
    EXPECT_EQ(c().setattr(kRoot, kSetattrSize, 0, 0, 0, 0).err(), static_cast<uint32_t>(EISDIR));
}

struct stat lstat_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
    return st;
}

// Linux's v9fs client shows qid.path + 2 as the inode number (v9fs_qid2ino).
uint64_t guest_ino(const Qid& q) {
    return q.path + 2;
}

TEST_F(P9ServerTest, TimesRoundTripWithNanoseconds) {
    write_host("t", "abc");
    ASSERT_FALSE(c().walk(kRoot, 1, {"t"}).is_error());
    const uint32_t both = kSetattrAtime | kSetattrMtime | kSetattrAtimeSet | kSetattrMtimeSet;

    // Guest sets both times with nanoseconds: exact in Rgetattr and on the host.
    auto r = c().set_times(1, both | kSetattrCtime, 1, 2003004, 2, 3004005);
    ASSERT_FALSE(r.is_error()) << r.err();
    auto a = decode_attr(c().getattr(1));
    EXPECT_EQ(a.atime, 1u);
    EXPECT_EQ(a.atime_ns, 2003004u);
    EXPECT_EQ(a.mtime, 2u);
    EXPECT_EQ(a.mtime_ns, 3004005u);
    struct stat st = lstat_of(root_ / "t");
    EXPECT_EQ(st.st_atim.tv_sec, 1);
    EXPECT_EQ(st.st_atim.tv_nsec, 2003004);
    EXPECT_EQ(st.st_mtim.tv_sec, 2);
    EXPECT_EQ(st.st_mtim.tv_nsec, 3004005);
    // ctime is the host's own, to the nanosecond, and recent.
    EXPECT_EQ(a.ctime, static_cast<uint64_t>(st.st_ctim.tv_sec));
    EXPECT_EQ(a.ctime_ns, static_cast<uint64_t>(st.st_ctim.tv_nsec));
    EXPECT_GT(a.ctime, static_cast<uint64_t>(time(nullptr)) - 60);

    // The largest nanosecond value is kept as well.
    ASSERT_FALSE(c().set_times(1, both, 1000000000, 999999999, 1000000001, 1).is_error());
    a = decode_attr(c().getattr(1));
    EXPECT_EQ(a.atime, 1000000000u);
    EXPECT_EQ(a.atime_ns, 999999999u);
    EXPECT_EQ(a.mtime, 1000000001u);
    EXPECT_EQ(a.mtime_ns, 1u);

    // One time alone leaves the other as it was.
    ASSERT_FALSE(c().set_times(1, kSetattrAtime | kSetattrAtimeSet, 5, 6, 0, 0).is_error());
    a = decode_attr(c().getattr(1));
    EXPECT_EQ(a.atime, 5u);
    EXPECT_EQ(a.atime_ns, 6u);
    EXPECT_EQ(a.mtime, 1000000001u);
    EXPECT_EQ(a.mtime_ns, 1u);
    ASSERT_FALSE(c().set_times(1, kSetattrMtime | kSetattrMtimeSet, 0, 0, 7, 8).is_error());
    a = decode_attr(c().getattr(1));
    EXPECT_EQ(a.atime, 5u);
    EXPECT_EQ(a.atime_ns, 6u);
    EXPECT_EQ(a.mtime, 7u);
    EXPECT_EQ(a.mtime_ns, 8u);
    // ATIME without ATIME_SET is "now" (the host's clock, with its nanoseconds).
    ASSERT_FALSE(c().set_times(1, kSetattrAtime, 0, 0, 0, 0).is_error());
    a = decode_attr(c().getattr(1));
    st = lstat_of(root_ / "t");
    EXPECT_GT(a.atime, 1600000000u);
    EXPECT_EQ(a.atime, static_cast<uint64_t>(st.st_atim.tv_sec));
    EXPECT_EQ(a.atime_ns, static_cast<uint64_t>(st.st_atim.tv_nsec));
    EXPECT_EQ(a.mtime, 7u);
    EXPECT_EQ(a.mtime_ns, 8u);
    // Out-of-range nanoseconds: EINVAL, nothing changes.
    EXPECT_EQ(c().set_times(1, both, 9, 1000000000, 9, 0).err(), static_cast<uint32_t>(EINVAL));
    EXPECT_EQ(decode_attr(c().getattr(1)).mtime, 7u);

    // A host-side change with nanoseconds is seen exactly.
    const timespec host_ts[2] = {{1700000000, 123456789}, {1700000001, 987654321}};
    ASSERT_EQ(utimensat(AT_FDCWD, (root_ / "t").c_str(), host_ts, 0), 0);
    a = decode_attr(c().getattr(1));
    EXPECT_EQ(a.atime, 1700000000u);
    EXPECT_EQ(a.atime_ns, 123456789u);
    EXPECT_EQ(a.mtime, 1700000001u);
    EXPECT_EQ(a.mtime_ns, 987654321u);

    // A write through the share: mtime and ctime are the host's, exactly.
    ASSERT_FALSE(c().lopen(1, kDotlRdwr).is_error());
    ASSERT_FALSE(c().write(1, 0, "more").is_error());
    a = decode_attr(c().getattr(1));
    st = lstat_of(root_ / "t");
    EXPECT_EQ(a.mtime, static_cast<uint64_t>(st.st_mtim.tv_sec));
    EXPECT_EQ(a.mtime_ns, static_cast<uint64_t>(st.st_mtim.tv_nsec));
    EXPECT_EQ(a.ctime, static_cast<uint64_t>(st.st_ctim.tv_sec));
    EXPECT_EQ(a.ctime_ns, static_cast<uint64_t>(st.st_ctim.tv_nsec));
    EXPECT_GT(a.mtime, 1700000001u);

    // Directories and symlinks take times too (a symlink's own, not its target's).
    fs::create_directory(root_ / "d");
    fs::create_symlink("t", root_ / "l");
    ASSERT_FALSE(c().walk(kRoot, 2, {"d"}).is_error());
    ASSERT_FALSE(c().walk(kRoot, 3, {"l"}).is_error());
    ASSERT_FALSE(c().set_times(2, both, 11, 12, 13, 14).is_error());
    ASSERT_FALSE(c().set_times(3, both, 21, 22, 23, 24).is_error());
    st = lstat_of(root_ / "d");
    EXPECT_EQ(st.st_atim.tv_nsec, 12);
    EXPECT_EQ(st.st_mtim.tv_sec, 13);
    EXPECT_EQ(st.st_mtim.tv_nsec, 14);
    st = lstat_of(root_ / "l");
    EXPECT_EQ(st.st_mtim.tv_sec, 23);
    EXPECT_EQ(st.st_mtim.tv_nsec, 24);
    a = decode_attr(c().getattr(3));
    EXPECT_EQ(a.mtime, 23u);
    EXPECT_EQ(a.mtime_ns, 24u);
    EXPECT_NE(lstat_of(root_ / "t").st_mtim.tv_sec, 23);
}

TEST_F(P9ServerTest, InodeNumbersLinksAndBlocksMatchTheHost) {
    // A file with data, a hard link to it, a sparse file, a directory, a symlink.
    write_host("big", std::string(100000, 'x'));
    ASSERT_EQ(link((root_ / "big").c_str(), (root_ / "big2").c_str()), 0);
    {
        int fd = open((root_ / "sparse").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(pwrite(fd, "z", 1, 1 << 20), 1);
        close(fd);
    }
    fs::create_directories(root_ / "dir" / "sub");
    fs::create_symlink("big", root_ / "sym");

    // Attach's qid: the root's own inode.
    EXPECT_EQ(guest_ino(root_qid_), lstat_of(root_).st_ino);

    uint32_t fid = 1;
    for (const char* name : {"big", "big2", "sparse", "dir", "sym"}) {
        SCOPED_TRACE(name);
        auto w = c().walk(kRoot, fid, {name});
        ASSERT_FALSE(w.is_error());
        const struct stat st = lstat_of(root_ / name);
        const auto a = decode_attr(c().getattr(fid));
        EXPECT_EQ(guest_ino(Client::walk_qids(w).at(0)), st.st_ino);
        EXPECT_EQ(guest_ino(a.qid), st.st_ino);
        EXPECT_EQ(a.nlink, st.st_nlink);
        EXPECT_EQ(a.blocks, static_cast<uint64_t>(st.st_blocks));
        EXPECT_EQ(a.blksize, static_cast<uint64_t>(st.st_blksize));
        EXPECT_EQ(a.size, static_cast<uint64_t>(st.st_size));
        ++fid;
    }
    EXPECT_EQ(decode_attr(c().getattr(1)).nlink, 2u);  // big and big2

    // Created objects: lcreate's and mkdir's qids are the new inodes.
    ASSERT_FALSE(c().walk(kRoot, fid, {}).is_error());
    auto cr = c().lcreate(fid, "made", kDotlRdwr | kDotlCreate, 0644);
    ASSERT_FALSE(cr.is_error());
    EXPECT_EQ(guest_ino(Client::qid_of(cr)), lstat_of(root_ / "made").st_ino);
    auto md = c().mkdir(kRoot, "madedir", 0755);
    ASSERT_FALSE(md.is_error());
    EXPECT_EQ(guest_ino(Client::qid_of(md)), lstat_of(root_ / "madedir").st_ino);

    // Readdir's qids (the guest's d_ino) agree with stat.
    ASSERT_FALSE(c().walk(kRoot, 20, {}).is_error());
    ASSERT_FALSE(c().lopen(20, kDotlDirectory).is_error());
    auto r = c().readdir(20, 0, 8192);
    ASSERT_FALSE(r.is_error());
    Reader rd = r.reader();
    rd.u32();
    int seen = 0;
    while (rd.remaining() > 0) {
        Qid q = rd.qid();
        rd.u64();
        rd.u8();
        std::string name(rd.str(255));
        ASSERT_TRUE(rd.ok());
        if (name == "..") continue;  // the share's parent: not ours to show
        EXPECT_EQ(guest_ino(q), lstat_of(root_ / name).st_ino) << name;
        ++seen;
    }
    EXPECT_EQ(seen, 8);  // . big big2 sparse dir sym made madedir
}

TEST_F(P9ServerTest, StatfsAndFsync) {
    auto r = c().statfs(kRoot);
    ASSERT_FALSE(r.is_error()) << r.err();
    Reader rd = r.reader();
    rd.u32();
    EXPECT_GT(rd.u32(), 0u);  // bsize
    EXPECT_GT(rd.u64(), 0u);  // blocks
    for (int i = 0; i < 5; ++i) rd.u64();
    EXPECT_GT(rd.u32(), 0u);  // namelen
    EXPECT_TRUE(rd.ok());
    EXPECT_EQ(rd.remaining(), 0u);

    write_host("f", "x");
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());
    ASSERT_FALSE(c().lopen(1, kDotlWronly).is_error());
    EXPECT_FALSE(c().fsync(1).is_error());
    // Old clients send no datasync field.
    EXPECT_FALSE(c().call(kTfsync, [](Writer& w) { w.u32(1); }).is_error());
}

TEST_F(P9ServerTest, Xattrs) {
    write_host("f", "x");
    if (setxattr((root_ / "f").c_str(), "user.probe", "1", 1, 0) != 0) {
        GTEST_SKIP() << "filesystem of /tmp has no user xattrs: " << std::strerror(errno);
    }
    removexattr((root_ / "f").c_str(), "user.probe");
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());
    // Set: xattrcreate, write the value, clunk.
    ASSERT_FALSE(c().walk(kRoot, 2, {"f"}).is_error());
    ASSERT_FALSE(c().xattrcreate(2, "user.color", 4, 0).is_error());
    ASSERT_FALSE(c().write(2, 0, "blue").is_error());
    auto cl = c().clunk(2);
    ASSERT_FALSE(cl.is_error()) << cl.err();
    char buf[16] = {};
    ASSERT_EQ(getxattr((root_ / "f").c_str(), "user.color", buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf, 4), "blue");

    // Get.
    auto xw = c().xattrwalk(1, 3, "user.color");
    ASSERT_FALSE(xw.is_error()) << xw.err();
    EXPECT_EQ(xw.reader().u64(), 4u);
    EXPECT_EQ(Client::read_data(c().read(3, 0, 100)), "blue");
    EXPECT_EQ(Client::read_data(c().read(3, 2, 100)), "ue");
    ASSERT_FALSE(c().clunk(3).is_error());
    // List.
    xw = c().xattrwalk(1, 3, "");
    ASSERT_FALSE(xw.is_error());
    std::string list = Client::read_data(c().read(3, 0, 1000));
    EXPECT_NE(list.find(std::string("user.color\0", 11)), std::string::npos);
    ASSERT_FALSE(c().clunk(3).is_error());
    // Missing attribute.
    EXPECT_EQ(c().xattrwalk(1, 3, "user.none").err(), static_cast<uint32_t>(ENODATA));
    // Privileged namespaces are refused.
    EXPECT_EQ(c().xattrwalk(1, 3, "security.capability").err(), static_cast<uint32_t>(EOPNOTSUPP));
    EXPECT_EQ(c().xattrcreate(1, "trusted.x", 1, 0).err(), static_cast<uint32_t>(EOPNOTSUPP));
    EXPECT_EQ(c().xattrcreate(1, "security.x", 1, 0).err(), static_cast<uint32_t>(EOPNOTSUPP));
    // Oversized value.
    EXPECT_EQ(c().xattrcreate(1, "user.big", 1 << 20, 0).err(), static_cast<uint32_t>(E2BIG));
    // A short write leaves the attribute unset and clunk reports it.
    ASSERT_FALSE(c().walk(kRoot, 4, {"f"}).is_error());
    ASSERT_FALSE(c().xattrcreate(4, "user.short", 10, 0).is_error());
    ASSERT_FALSE(c().write(4, 0, "abc").is_error());
    EXPECT_EQ(c().write(4, 8, "abcdef").err(), static_cast<uint32_t>(EINVAL));
    EXPECT_EQ(c().clunk(4).err(), static_cast<uint32_t>(EINVAL));
    EXPECT_LT(getxattr((root_ / "f").c_str(), "user.short", buf, sizeof buf), 0);
    // Size 0 removes.
    ASSERT_FALSE(c().walk(kRoot, 4, {"f"}).is_error());
    ASSERT_FALSE(c().xattrcreate(4, "user.color", 0, 0).is_error());
    ASSERT_FALSE(c().clunk(4).is_error());
    EXPECT_LT(getxattr((root_ / "f").c_str(), "user.color", buf, sizeof buf), 0);
}

TEST_F(P9ServerTest, XattrMemoryIsBudgeted) {
    P9Server::Options o;
    o.max_xattr_bytes = 100;
    start(false, o);
    write_host("f", "x");
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());
    ASSERT_FALSE(c().walk(kRoot, 2, {"f"}).is_error());
    ASSERT_FALSE(c().xattrcreate(1, "user.a", 64, 0).is_error());
    EXPECT_EQ(c().xattrcreate(2, "user.b", 64, 0).err(), static_cast<uint32_t>(ENOMEM));
    c().clunk(1);  // gives the budget back (the unwritten value is not set)
    EXPECT_FALSE(c().xattrcreate(2, "user.b", 64, 0).is_error());
}

TEST_F(P9ServerTest, LockAndGetlock) {
    write_host("f", "0123456789");
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());
    ASSERT_FALSE(c().lopen(1, kDotlRdwr).is_error());
    ASSERT_FALSE(c().walk(kRoot, 2, {"f"}).is_error());
    ASSERT_FALSE(c().lopen(2, kDotlRdwr).is_error());

    auto r = c().lock(1, kLockTypeWrlck, 0, 5);
    ASSERT_FALSE(r.is_error()) << r.err();
    EXPECT_EQ(r.reader().u8(), kLockSuccess);
    // A second open file conflicts: BLOCKED, never a hang.
    r = c().lock(2, kLockTypeWrlck, 0, 1);
    EXPECT_EQ(r.reader().u8(), kLockBlocked);
    r = c().getlock(2, kLockTypeWrlck, 0, 1);
    ASSERT_FALSE(r.is_error()) << r.err();
    Reader rd = r.reader();
    EXPECT_EQ(rd.u8(), kLockTypeWrlck);
    EXPECT_EQ(rd.u64(), 0u);
    EXPECT_EQ(rd.u64(), 5u);
    // Non-overlapping range is free.
    r = c().getlock(2, kLockTypeWrlck, 6, 1);
    EXPECT_EQ(r.reader().u8(), kLockTypeUnlck);
    EXPECT_EQ(c().lock(2, kLockTypeWrlck, 6, 1).reader().u8(), kLockSuccess);
    // Unlock and retry.
    EXPECT_EQ(c().lock(1, kLockTypeUnlck, 0, 5).reader().u8(), kLockSuccess);
    EXPECT_EQ(c().lock(2, kLockTypeWrlck, 0, 1).reader().u8(), kLockSuccess);
    EXPECT_EQ(c().lock(1, 7, 0, 1).err(), static_cast<uint32_t>(EINVAL));
    EXPECT_EQ(c().lock(kRoot, kLockTypeRdlck, 0, 1).err(), static_cast<uint32_t>(EBADF));
}

// ---- escape attempts: everything stays inside the share ----

TEST_F(P9ServerTest, DotDotAtRootStaysAtRoot) {
    auto w = c().walk(kRoot, 1, {".."});
    ASSERT_FALSE(w.is_error());
    EXPECT_EQ(Client::walk_qids(w)[0], root_qid_);
    std::vector<std::string> up(16, "..");
    w = c().walk(kRoot, 2, up);
    ASSERT_FALSE(w.is_error());
    for (const auto& q : Client::walk_qids(w)) EXPECT_EQ(q, root_qid_);
    // And from there, the outside file is not reachable.
    EXPECT_EQ(c().walk(2, 3, {"outside_secret"}).err(), static_cast<uint32_t>(ENOENT));
    // A partial walk: ".." answered (the root), the outside name not found, no fid.
    auto part = c().walk(kRoot, 3, {"..", "outside_secret"});
    ASSERT_FALSE(part.is_error());
    EXPECT_EQ(Client::walk_qids(part).size(), 1u);
    EXPECT_EQ(c().getattr(3).err(), static_cast<uint32_t>(EBADF));

    fs::create_directories(root_ / "a/b");
    w = c().walk(kRoot, 4, {"a", "b", "..", "..", "..", ".."});
    ASSERT_FALSE(w.is_error());
    auto q = Client::walk_qids(w);
    ASSERT_EQ(q.size(), 6u);
    EXPECT_EQ(q[3], root_qid_);
    EXPECT_EQ(q[5], root_qid_);
    EXPECT_EQ(decode_attr(c().getattr(4)).qid, root_qid_);
}

TEST_F(P9ServerTest, DotDotOfDirectoryMovedOutsideIsRefused) {
    fs::create_directories(root_ / "a/b");
    ASSERT_FALSE(c().walk(kRoot, 1, {"a", "b"}).is_error());
    // The host moves the directory out of the share under the guest's feet.
    fs::rename(root_ / "a", base_ / "moved");
    EXPECT_EQ(c().walk(1, 2, {".."}).err(), static_cast<uint32_t>(EXDEV));
}

TEST_F(P9ServerTest, NamesWithSlashOrEmptyAreRejected) {
    fs::create_directories(root_ / "a");
    write_host("a/f", "x");
    for (const std::string& bad :
         std::vector<std::string>{"a/f", "/etc", "../outside_secret", "", std::string("a\0b", 3)}) {
        SCOPED_TRACE(bad);
        EXPECT_EQ(c().walk(kRoot, 1, {bad}).err(), static_cast<uint32_t>(EINVAL));
        EXPECT_EQ(c().mkdir(kRoot, bad).err(), static_cast<uint32_t>(EINVAL));
        EXPECT_EQ(c().symlink(kRoot, bad, "t").err(), static_cast<uint32_t>(EINVAL));
        EXPECT_EQ(c().unlinkat(kRoot, bad, 0).err(), static_cast<uint32_t>(EINVAL));
        EXPECT_EQ(c().renameat(kRoot, "a", kRoot, bad).err(), static_cast<uint32_t>(EINVAL));
    }
    for (std::string bad : {".", ".."}) {
        EXPECT_EQ(c().mkdir(kRoot, bad).err(), static_cast<uint32_t>(EINVAL));
        EXPECT_EQ(c().unlinkat(kRoot, bad, kUnlinkRemoveDir).err(), static_cast<uint32_t>(EINVAL));
    }
    ASSERT_FALSE(c().walk(kRoot, 2, {"a", "f"}).is_error());
    EXPECT_EQ(c().rename(2, kRoot, "../escaped").err(), static_cast<uint32_t>(EINVAL));
    EXPECT_EQ(c().link(kRoot, 2, "../escaped").err(), static_cast<uint32_t>(EINVAL));
    EXPECT_EQ(c().link(kRoot, 2, "a/x").err(), static_cast<uint32_t>(EINVAL));
    ASSERT_FALSE(c().walk(kRoot, 3, {}).is_error());
    EXPECT_EQ(c().lcreate(3, "../escaped", kDotlRdwr, 0644).err(), static_cast<uint32_t>(EINVAL));
    EXPECT_FALSE(fs::exists(base_ / "escaped"));
    EXPECT_TRUE(fs::exists(root_ / "a/f"));
}

TEST_F(P9ServerTest, SymlinksAreNeverFollowed) {
    fs::create_directory_symlink("/etc", root_ / "etc_link");
    fs::create_directory_symlink("../../..", root_ / "up_link");
    fs::create_symlink("/etc/passwd", root_ / "passwd_link");
    fs::create_symlink("../outside_secret", root_ / "secret_link");

    struct stat before {};
    ASSERT_EQ(stat((base_ / "outside_secret").c_str(), &before), 0);
    for (std::string link : {"etc_link", "up_link", "passwd_link", "secret_link"}) {
        SCOPED_TRACE(link);
        // Walking onto the symlink yields the symlink itself.
        auto w = c().walk(kRoot, 1, {link});
        ASSERT_FALSE(w.is_error());
        EXPECT_EQ(Client::walk_qids(w)[0].type, kQtSymlink);
        EXPECT_EQ(decode_attr(c().getattr(1)).mode & S_IFMT, static_cast<uint32_t>(S_IFLNK));
        // Opening it fails: it is never followed on the host.
        EXPECT_EQ(c().lopen(1, 0).err(), static_cast<uint32_t>(ELOOP));
        EXPECT_EQ(c().read(1, 0, 100).err(), static_cast<uint32_t>(EBADF));
        // Walking through it fails.
        EXPECT_NE(c().walk(1, 2, {"passwd"}).err(), 0u);
        auto part = c().walk(kRoot, 2, {link, "passwd"});  // partial at best
        ASSERT_FALSE(part.is_error());
        EXPECT_EQ(Client::walk_qids(part).size(), 1u);
        EXPECT_EQ(c().getattr(2).err(), static_cast<uint32_t>(EBADF));
        // Creating through it fails.
        EXPECT_NE(c().mkdir(1, "x").err(), 0u);
        EXPECT_NE(c().lcreate(1, "x", kDotlRdwr, 0644).err(), 0u);
        // setattr on the link never reaches its target.
        EXPECT_NE(c().setattr(1, kSetattrMode, 0777, 0, 0, 0).err(), 0u);
        EXPECT_NE(c().setattr(1, kSetattrSize, 0, 0, 0, 0).err(), 0u);
        c().setattr(1, kSetattrMtime | kSetattrMtimeSet, 0, 0, 12345, 0);  // the link's own, if any
        // xattrs of a link are empty here, never its target's.
        auto xw = c().xattrwalk(1, 5, "");
        if (!xw.is_error()) {
            EXPECT_EQ(xw.reader().u64(), 0u);
            c().clunk(5);
        }
        ASSERT_FALSE(c().clunk(1).is_error());
    }
    EXPECT_EQ(read_host(base_ / "outside_secret"), "secret");
    struct stat after {};
    ASSERT_EQ(stat((base_ / "outside_secret").c_str(), &after), 0);
    EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    EXPECT_EQ(after.st_mode, before.st_mode);
    // lcreate onto an existing symlink name does not follow it either.
    ASSERT_FALSE(c().walk(kRoot, 3, {}).is_error());
    EXPECT_NE(c().lcreate(3, "secret_link", kDotlRdwr | kDotlTrunc, 0644).err(), 0u);
    EXPECT_EQ(read_host(base_ / "outside_secret"), "secret");
}

TEST_F(P9ServerTest, AttachNameAlwaysMeansTheShareRoot) {
    for (std::string aname : {"", "/", "share", "/etc", "../", "..", "/proc/self/root"}) {
        SCOPED_TRACE(aname);
        auto a = c().attach(10, aname);
        ASSERT_FALSE(a.is_error());
        EXPECT_EQ(Client::qid_of(a), root_qid_);
        EXPECT_EQ(c().walk(10, 11, {"passwd"}).err(), static_cast<uint32_t>(ENOENT));
        EXPECT_EQ(c().walk(10, 11, {"outside_secret"}).err(), static_cast<uint32_t>(ENOENT));
        ASSERT_FALSE(c().clunk(10).is_error());
    }
    // Attaching onto a fid in use is refused.
    EXPECT_EQ(c().attach(kRoot).err(), static_cast<uint32_t>(EEXIST));
    EXPECT_EQ(c().attach(kNoFid).err(), static_cast<uint32_t>(EBADF));
}

TEST_F(P9ServerTest, FidTableIsBounded) {
    P9Server::Options o;
    o.max_fids = 8;
    start(false, o);
    for (uint32_t i = 1; i < 8; ++i) ASSERT_FALSE(c().walk(kRoot, i, {}).is_error());
    EXPECT_EQ(server_->fid_count(), 8u);
    EXPECT_EQ(c().walk(kRoot, 100, {}).err(), static_cast<uint32_t>(EMFILE));
    ASSERT_FALSE(c().clunk(3).is_error());
    EXPECT_FALSE(c().walk(kRoot, 100, {}).is_error());
}

TEST_F(P9ServerTest, ReadOnlyShareRefusesEveryWrite) {
    fs::create_directories(root_ / "d");
    write_host("f", "content");
    start(true);
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());
    ASSERT_FALSE(c().walk(kRoot, 2, {"d"}).is_error());
    const uint32_t erofs = EROFS;
    EXPECT_EQ(c().lopen(1, kDotlWronly).err(), erofs);
    EXPECT_EQ(c().lopen(1, kDotlRdwr).err(), erofs);
    EXPECT_EQ(c().lopen(1, kDotlTrunc).err(), erofs);
    EXPECT_EQ(c().lcreate(2, "n", kDotlRdwr | kDotlCreate, 0644).err(), erofs);
    EXPECT_EQ(c().mkdir(kRoot, "n").err(), erofs);
    EXPECT_EQ(c().symlink(kRoot, "n", "t").err(), erofs);
    EXPECT_EQ(c().mknod(kRoot, "n", S_IFIFO | 0600).err(), erofs);
    EXPECT_EQ(c().link(kRoot, 1, "n").err(), erofs);
    EXPECT_EQ(c().rename(1, kRoot, "n").err(), erofs);
    EXPECT_EQ(c().renameat(kRoot, "f", kRoot, "n").err(), erofs);
    EXPECT_EQ(c().unlinkat(kRoot, "f", 0).err(), erofs);
    EXPECT_EQ(c().setattr(1, kSetattrMode, 0777, 0, 0, 0).err(), erofs);
    EXPECT_EQ(c().setattr(1, kSetattrSize, 0, 0, 0, 0).err(), erofs);
    EXPECT_EQ(c().setattr(1, kSetattrMtime, 0, 0, 0, 0).err(), erofs);
    EXPECT_EQ(c().xattrcreate(1, "user.x", 1, 0).err(), erofs);
    ASSERT_FALSE(c().walk(kRoot, 3, {"f"}).is_error());
    EXPECT_EQ(c().remove(3).err(), erofs);
    // Reading still works, writes through a read-only open too are refused.
    ASSERT_FALSE(c().lopen(1, 0).is_error());
    EXPECT_EQ(Client::read_data(c().read(1, 0, 100)), "content");
    EXPECT_EQ(c().write(1, 0, "x").err(), erofs);
    EXPECT_EQ(read_host(root_ / "f"), "content");
    EXPECT_TRUE(fs::exists(root_ / "f"));
    EXPECT_FALSE(fs::exists(root_ / "n"));
}

// ---- hostile framing ----

TEST_F(P9ServerTest, TruncatedAndInconsistentMessagesGetRlerror) {
    auto msg = c().encode(kTwalk, [](Writer& w) {
        w.u32(kRoot);
        w.u32(1);
        w.u16(1);
        w.str("x");
    });
    // Size field larger than the buffer.
    for (size_t cut = 0; cut < msg.size(); ++cut) {
        auto r = c().raw(std::span(msg).first(cut));
        ASSERT_TRUE(r.is_error()) << cut;
        EXPECT_EQ(r.err(), static_cast<uint32_t>(EPROTO));
    }
    // Size field consistent but body truncated (every message type).
    const uint8_t types[] = {kTversion,   kTattach,      kTwalk,   kTlopen,   kTlcreate, kTread,
                             kTwrite,     kTclunk,       kTremove, kTgetattr, kTsetattr, kTreaddir,
                             kTmkdir,     kTsymlink,     kTmknod,  kTlink,    kTrename,  kTrenameat,
                             kTunlinkat,  kTreadlink,    kTstatfs, kTfsync,   kTlock,    kTgetlock,
                             kTxattrwalk, kTxattrcreate, kTflush};
    for (uint8_t t : types) {
        // Every message has at least 4 body bytes, except Tflush (2).
        for (size_t body = 0; body < (t == kTflush ? 2u : 4u); ++body) {
            std::vector<uint8_t> m(kHeaderSize + body, 0);
            Writer w(m);
            w.begin(t, 9);
            for (size_t i = 0; i < body; ++i) w.u8(0);
            ASSERT_EQ(w.finish(), m.size());
            auto r = c().raw(m);
            EXPECT_TRUE(r.is_error()) << int(t) << " body " << body;
            EXPECT_EQ(r.tag, 9);
        }
    }
    // Trailing garbage after a valid message.
    auto fl = c().encode(kTflush, [](Writer& w) { w.u32(7); });
    EXPECT_EQ(c().raw(fl).err(), static_cast<uint32_t>(EPROTO));
    auto clunk = c().encode(kTgetattr, [](Writer& w) {
        w.u32(kRoot);
        w.u64(kGetattrBasic);
        w.u32(0xdeadbeef);
    });
    EXPECT_EQ(c().raw(clunk).err(), static_cast<uint32_t>(EPROTO));
    // A string length pointing past the end.
    auto bad = c().encode(kTwalk, [](Writer& w) {
        w.u32(kRoot);
        w.u32(1);
        w.u16(1);
        w.u16(200);
        w.bytes(std::vector<uint8_t>(10, 'a'));
    });
    EXPECT_EQ(c().raw(bad).err(), static_cast<uint32_t>(EPROTO));
    // A name longer than NAME_MAX.
    EXPECT_EQ(c().walk(kRoot, 1, {std::string(300, 'a')}).err(),
              static_cast<uint32_t>(ENAMETOOLONG));
    // Twrite whose count disagrees with the frame.
    auto w = c().encode(kTwrite, [](Writer& w) {
        w.u32(kRoot);
        w.u64(0);
        w.u32(1000);
        w.bytes(std::vector<uint8_t>(10, 'a'));
    });
    EXPECT_EQ(c().raw(w).err(), static_cast<uint32_t>(EPROTO));
}

TEST_F(P9ServerTest, OversizedMessagesAreRefused) {
    ASSERT_FALSE(c().version(8192).is_error());
    ASSERT_FALSE(c().attach(kRoot).is_error());
    std::vector<uint8_t> big(9000);
    Writer w(big);
    w.begin(kTwrite, 1);
    w.u32(kRoot);
    w.u64(0);
    w.u32(9000 - kWriteHeaderSize);
    w.finish();
    store_le32(big.data(), 9000);
    EXPECT_EQ(c().raw(big).err(), static_cast<uint32_t>(EMSGSIZE));
    // A non-write message that large is refused too.
    std::vector<uint8_t> big2(8000, 0);
    Writer w2(big2);
    w2.begin(kTgetattr, 1);
    store_le32(big2.data(), 8000);
    EXPECT_TRUE(c().raw(big2).is_error());
}

TEST_F(P9ServerTest, ResponseBufferLimitsAreHonoured) {
    auto msg = c().encode(kTgetattr, [](Writer& w) {
        w.u32(kRoot);
        w.u64(kGetattrBasic);
    });
    std::vector<uint8_t> resp(10, 0xEE);
    EXPECT_EQ(server_->handle(msg, resp), 0u);  // cannot even say Rlerror
    for (auto b : resp) EXPECT_EQ(b, 0xEE);
    // Room for Rlerror but not Rgetattr.
    std::vector<uint8_t> resp2(64 + 16, 0xEE);
    size_t n = server_->handle(msg, std::span(resp2).first(64));
    ASSERT_EQ(n, 11u);
    EXPECT_EQ(resp2[4], kRlerror);
    for (size_t i = 64; i < resp2.size(); ++i) EXPECT_EQ(resp2[i], 0xEE);
    // Tread is capped by the response size.
    write_host("f", std::string(1000, 'z'));
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());
    ASSERT_FALSE(c().lopen(1, 0).is_error());
    auto rd = c().encode(kTread, [](Writer& w) {
        w.u32(1);
        w.u64(0);
        w.u32(1000);
    });
    std::vector<uint8_t> r3(11 + 100 + 8, 0xEE);
    n = server_->handle(rd, std::span(r3).first(111));
    EXPECT_EQ(n, 111u);
    EXPECT_EQ(load_le32(r3.data()), 111u);
    EXPECT_EQ(load_le32(r3.data() + 7), 100u);
    for (size_t i = 111; i < r3.size(); ++i) EXPECT_EQ(r3[i], 0xEE);
}

TEST_F(P9ServerTest, RandomGarbageNeverCrashes) {
    fs::create_directories(root_ / "d");
    write_host("d/f", "data");
    std::mt19937 rng(12345);
    std::vector<uint8_t> resp(4096);
    const uint8_t types[] = {kTversion,   kTattach,      kTwalk,   kTlopen,   kTlcreate, kTread,
                             kTwrite,     kTclunk,       kTremove, kTgetattr, kTsetattr, kTreaddir,
                             kTmkdir,     kTsymlink,     kTmknod,  kTlink,    kTrename,  kTrenameat,
                             kTunlinkat,  kTreadlink,    kTstatfs, kTfsync,   kTlock,    kTgetlock,
                             kTxattrwalk, kTxattrcreate, kTflush,  kTauth};
    for (int iter = 0; iter < 20000; ++iter) {
        size_t len = kHeaderSize + rng() % 64;
        std::vector<uint8_t> m(len);
        for (auto& b : m) b = static_cast<uint8_t>(rng());
        if (rng() % 8 != 0) store_le32(m.data(), static_cast<uint32_t>(len));
        if (rng() % 8 != 0) m[4] = types[rng() % std::size(types)];
        // Small fids, so that some messages hit real fids.
        if (len >= 11 && rng() % 2) store_le32(m.data() + 7, rng() % 4);
        if (m[4] == kTversion) continue;  // would reset the session each time
        size_t n = server_->handle(m, resp);
        ASSERT_LE(n, resp.size());
        ASSERT_GE(n, kHeaderSize);
    }
    // The host outside the share is untouched.
    EXPECT_EQ(read_host(base_ / "outside_secret"), "secret");
}

// ---- scatter/gather and threads ----

TEST_F(P9ServerTest, ScatterGatherReadAndWrite) {
    write_host("f", "abcdefghijklmnopqrstuvwxyz");
    ASSERT_FALSE(c().walk(kRoot, 1, {"f"}).is_error());
    ASSERT_FALSE(c().lopen(1, kDotlRdwr).is_error());

    // Read into a response split into odd segments, header included.
    auto rd = c().encode(kTread, [](Writer& w) {
        w.u32(1);
        w.u64(2);
        w.u32(20);
    });
    std::vector<uint8_t> a(3), b(9), cc(5), d(100);
    std::vector<std::span<uint8_t>> resp = {a, b, cc, d};
    std::vector<std::span<uint8_t>> req;
    req.reserve(rd.size());
    // Request split one byte per segment.
    for (auto& byte : rd) req.emplace_back(&byte, 1);
    size_t n = server_->handle(P9Server::IoVecs(req), P9Server::IoVecs(resp));
    ASSERT_EQ(n, 11u + 20u);
    std::vector<uint8_t> flat;
    for (auto s : resp) flat.insert(flat.end(), s.begin(), s.end());
    EXPECT_EQ(load_le32(flat.data()), 31u);
    EXPECT_EQ(flat[4], kRread);
    EXPECT_EQ(load_le32(flat.data() + 7), 20u);
    EXPECT_EQ(std::string(flat.begin() + 11, flat.begin() + 31), "cdefghijklmnopqrstuv");

    // Write from a request split across segments.
    auto wr = c().encode(kTwrite, [](Writer& w) {
        w.u32(1);
        w.u64(0);
        w.u32(6);
        w.bytes(std::vector<uint8_t>{'1', '2', '3', '4', '5', '6'});
    });
    std::vector<std::span<uint8_t>> wreq = {std::span(wr).first(5), std::span(wr).subspan(5, 20),
                                            std::span(wr).subspan(25)};
    std::vector<uint8_t> r1(4), r2(20);
    std::vector<std::span<uint8_t>> wresp = {r1, r2};
    n = server_->handle(P9Server::IoVecs(wreq), P9Server::IoVecs(wresp));
    ASSERT_EQ(n, 11u);
    EXPECT_EQ(r2[0], kRwrite);
    EXPECT_EQ(read_host(root_ / "f").substr(0, 8), "123456gh");

    // A small message in pieces, reply in pieces.
    auto ga = c().encode(kTgetattr, [](Writer& w) {
        w.u32(1);
        w.u64(kGetattrBasic);
    });
    std::vector<std::span<uint8_t>> greq = {std::span(ga).first(2), std::span(ga).subspan(2)};
    std::vector<uint8_t> g1(50), g2(50), g3(200);
    std::vector<std::span<uint8_t>> gresp = {g1, g2, g3};
    n = server_->handle(P9Server::IoVecs(greq), P9Server::IoVecs(gresp));
    EXPECT_EQ(n, kHeaderSize + 153u);
    EXPECT_EQ(g1[4], kRgetattr);
}

TEST_F(P9ServerTest, ConcurrentRequestsOnDifferentFids) {
    constexpr int kThreads = 4;
    for (int t = 0; t < kThreads; ++t) write_host("f" + std::to_string(t), "");
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            Client cl(*server_);
            const uint32_t fid = 100 + t;
            for (int i = 0; i < 200; ++i) {
                if (cl.walk(kRoot, fid, {"f" + std::to_string(t)}).is_error()) ++failures;
                if (cl.lopen(fid, kDotlRdwr).is_error()) ++failures;
                std::string data = std::to_string(i);
                if (cl.write(fid, 0, data).is_error()) ++failures;
                if (Client::read_data(cl.read(fid, 0, 100)).substr(0, data.size()) != data)
                    ++failures;
                if (cl.getattr(kRoot).is_error()) ++failures;
                if (cl.clunk(fid).is_error()) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(server_->fid_count(), 1u);
}

TEST(P9ServerCreate, RejectsBadRoots) {
    EXPECT_FALSE(P9Server::create(UniqueFd(), false, {}).has_value());
    int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_FALSE(P9Server::create(UniqueFd(fd), false, {}).has_value());
}

}  // namespace
}  // namespace kvmsandbox::p9
