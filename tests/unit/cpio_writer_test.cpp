#include "boot/cpio_writer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "temp_dir.h"

using namespace kvmsandbox;
using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

// An independent newc reader, strict about everything the kernel checks:
// magic, hex fields, NUL-terminated names, zero padding to 4 bytes.
struct Entry {
    uint32_t ino, mode, uid, gid, nlink, mtime, devmajor, devminor, rdevmajor, rdevminor, check;
    std::string name;
    std::string data;
};

bool parse_hex8(const uint8_t* p, uint32_t& out) {
    out = 0;
    for (int i = 0; i < 8; ++i) {
        char c = static_cast<char>(p[i]);
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = static_cast<uint32_t>(c - '0');
        else if (c >= 'A' && c <= 'F')
            d = static_cast<uint32_t>(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            d = static_cast<uint32_t>(c - 'a' + 10);
        else
            return false;
        out = out << 4 | d;
    }
    return true;
}

bool zeros(const std::vector<uint8_t>& a, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i)
        if (a[i] != 0) return false;
    return true;
}

// Parses one archive starting at `pos` (which must be 4-aligned); returns its
// entries without the trailer and moves `pos` past it. Fails the test on any
// format error.
std::vector<Entry> parse_one(const std::vector<uint8_t>& a, size_t& pos) {
    std::vector<Entry> out;
    EXPECT_EQ(pos % 4, 0u);
    while (true) {
        if (pos + 110 > a.size()) {
            ADD_FAILURE() << "truncated header at " << pos;
            return out;
        }
        if (std::string(a.begin() + pos, a.begin() + pos + 6) != "070701") {
            ADD_FAILURE() << "bad magic at " << pos;
            return out;
        }
        uint32_t f[13];
        for (int i = 0; i < 13; ++i) {
            if (!parse_hex8(&a[pos + 6 + 8 * i], f[i])) {
                ADD_FAILURE() << "bad hex field " << i << " at " << pos;
                return out;
            }
        }
        Entry e{f[0], f[1], f[2], f[3], f[4], f[5], f[7], f[8], f[9], f[10], f[12], {}, {}};
        uint32_t filesize = f[6], namesize = f[11];
        size_t name_at = pos + 110;
        if (namesize == 0 || name_at + namesize > a.size() || a[name_at + namesize - 1] != 0) {
            ADD_FAILURE() << "bad name at " << pos;
            return out;
        }
        e.name.assign(a.begin() + name_at, a.begin() + name_at + namesize - 1);
        EXPECT_EQ(e.name.find('\0'), std::string::npos);
        size_t data_at = (name_at + namesize + 3) & ~size_t{3};
        EXPECT_TRUE(zeros(a, name_at + namesize, data_at)) << e.name;
        if (data_at + filesize > a.size()) {
            ADD_FAILURE() << "truncated data of " << e.name;
            return out;
        }
        e.data.assign(a.begin() + data_at, a.begin() + data_at + filesize);
        size_t next = (data_at + filesize + 3) & ~size_t{3};
        EXPECT_LE(next, a.size());
        EXPECT_TRUE(zeros(a, data_at + filesize, std::min(next, a.size()))) << e.name;
        pos = next;
        if (e.name == "TRAILER!!!") {
            EXPECT_EQ(filesize, 0u);
            return out;
        }
        out.push_back(std::move(e));
    }
}

std::vector<Entry> parse_all(const std::vector<uint8_t>& a) {
    size_t pos = 0;
    auto entries = parse_one(a, pos);
    EXPECT_EQ(pos, a.size());
    return entries;
}

std::span<const uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct TempDir : kvmsandbox::testing::TempDir {
    TempDir() : kvmsandbox::testing::TempDir("cpio"), dir(path) {}
    fs::path dir;
};

}  // namespace

TEST(CpioWriter, ByteExactSmallArchive) {
    CpioWriter w;
    ASSERT_TRUE(w.add_file("a/b", 0644, std::string_view("hi")));
    auto out = w.finish();
    std::string expected =
        // "a": the implicit parent; 110 + 2 bytes of name: already aligned.
        "070701"
        "00000001"  // ino
        "000041ED"  // mode
        "00000000"  // uid
        "00000000"  // gid
        "00000002"  // nlink
        "00000000"  // mtime
        "00000000"  // filesize
        "00000000"  // devmajor
        "00000000"  // devminor
        "00000000"  // rdevmajor
        "00000000"  // rdevminor
        "00000002"  // namesize
        "00000000"  // check
        "a\0"s
        // "a/b": 110 + 4 bytes of name -> 2 of padding; "hi" -> 2 of padding.
        "070701"
        "00000002"  // ino
        "000081A4"  // mode
        "00000000"  // uid
        "00000000"  // gid
        "00000001"  // nlink
        "00000000"  // mtime
        "00000002"  // filesize
        "00000000"  // devmajor
        "00000000"  // devminor
        "00000000"  // rdevmajor
        "00000000"  // rdevminor
        "00000004"  // namesize
        "00000000"  // check
        "a/b\0\0\0"s
        "hi\0\0"s
        // The trailer: 110 + 11 bytes of name -> 3 of padding.
        "070701"
        "00000000"  // ino
        "00000000"  // mode
        "00000000"  // uid
        "00000000"  // gid
        "00000001"  // nlink
        "00000000"  // mtime
        "00000000"  // filesize
        "00000000"  // devmajor
        "00000000"  // devminor
        "00000000"  // rdevmajor
        "00000000"  // rdevminor
        "0000000B"  // namesize
        "00000000"  // check
        "TRAILER!!!\0\0\0\0"s;
    EXPECT_EQ(std::string(out.begin(), out.end()), expected);
}

TEST(CpioWriter, ParsesBackWithParentsInodesAndPadding) {
    CpioWriter w;
    std::vector<uint8_t> blob(1001);
    for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<uint8_t>(i * 7);
    ASSERT_TRUE(w.add_file("/kvmsandbox/config", 0600, std::string_view("argv 2:ls\n")));
    ASSERT_TRUE(w.add_file("kvmsandbox/modules/9p.ko", 0644, std::span<const uint8_t>(blob)));
    ASSERT_TRUE(w.add_directory("kvmsandbox/rootfs/tmp", 01777));
    ASSERT_TRUE(w.add_symlink("kvmsandbox/rootfs/bin", "usr/bin"));
    ASSERT_TRUE(w.add_directory("kvmsandbox", 0700));  // existing: mode updated in place
    ASSERT_TRUE(w.add_file("init", 0755, std::string_view("")));
    auto out = w.finish();
    EXPECT_EQ(out.size() % 4, 0u);

    auto e = parse_all(out);
    std::vector<std::string> names;
    for (const auto& x : e) names.push_back(x.name);
    EXPECT_EQ(names,
              (std::vector<std::string>{"kvmsandbox", "kvmsandbox/config", "kvmsandbox/modules",
                                        "kvmsandbox/modules/9p.ko", "kvmsandbox/rootfs",
                                        "kvmsandbox/rootfs/tmp", "kvmsandbox/rootfs/bin", "init"}));
    std::set<uint32_t> inodes;
    for (const auto& x : e) {
        inodes.insert(x.ino);
        EXPECT_EQ(x.uid, 0u);
        EXPECT_EQ(x.gid, 0u);
        EXPECT_EQ(x.mtime, 0u);
        EXPECT_EQ(x.check, 0u);
        EXPECT_NE(x.ino, 0u);
        if (S_ISREG(x.mode)) {
            EXPECT_EQ(x.nlink, 1u) << x.name;
        }
    }
    EXPECT_EQ(inodes.size(), e.size());
    EXPECT_EQ(e[0].mode, S_IFDIR | 0700u);
    EXPECT_EQ(e[1].mode, S_IFREG | 0600u);
    EXPECT_EQ(e[1].data, "argv 2:ls\n");
    EXPECT_EQ(e[2].mode, S_IFDIR | 0755u);
    EXPECT_EQ(e[3].data, std::string(blob.begin(), blob.end()));
    EXPECT_EQ(e[5].mode, S_IFDIR | 01777u);
    EXPECT_EQ(e[6].mode, S_IFLNK | 0777u);
    EXPECT_EQ(e[6].data, "usr/bin");
    EXPECT_EQ(e[7].data, "");

    // The writer starts afresh after finish(), and the output is reproducible.
    CpioWriter w2;
    ASSERT_TRUE(w2.add_file("a", 0644, std::string_view("x")));
    auto first = w2.finish();
    ASSERT_TRUE(w2.add_file("a", 0644, std::string_view("x")));
    EXPECT_EQ(w2.finish(), first);
}

TEST(CpioWriter, RejectsBadPaths) {
    CpioWriter w;
    for (std::string_view bad : {"", "/", "a/../b", "..", "a/./b", "a//b", "a/", "TRAILER!!!"})
        EXPECT_FALSE(w.add_file(bad, 0644, std::string_view("x"))) << bad;
    EXPECT_FALSE(w.add_directory("x/.."));
    EXPECT_FALSE(w.add_symlink("l", ""));
    ASSERT_TRUE(w.add_file("f", 0644, std::string_view("x")));
    EXPECT_FALSE(w.add_file("f", 0644, std::string_view("y")));  // duplicate
    EXPECT_FALSE(w.add_directory("f"));                          // file, not a directory
    EXPECT_FALSE(w.add_file("f/g", 0644, std::string_view("y")));
    // Refused paths leave nothing behind: only "f" is in the archive.
    auto e = parse_all(w.finish());
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].name, "f");
}

TEST(CpioWriter, FromDiskReadsAndCapsSize) {
    TempDir t;
    std::ofstream(t.dir / "data") << "hello from disk";
    CpioWriter w;
    ASSERT_TRUE(w.add_file_from_disk("d/data", (t.dir / "data").string(), 0640));
    auto small = w.add_file_from_disk("d/big", (t.dir / "data").string(), 0640, 4);
    ASSERT_FALSE(small);
    EXPECT_NE(small.error().message.find("too large"), std::string::npos);
    EXPECT_FALSE(w.add_file_from_disk("d/none", (t.dir / "missing").string(), 0640));
    auto e = parse_all(w.finish());
    ASSERT_EQ(e.size(), 2u);
    EXPECT_EQ(e[1].data, "hello from disk");
    EXPECT_EQ(e[1].mode, S_IFREG | 0640u);
}

TEST(CpioWriter, ConcatenationKeepsEachArchiveAligned) {
    CpioWriter w;
    ASSERT_TRUE(w.add_file("one", 0644, std::string_view("1")));
    auto a = w.finish();
    ASSERT_TRUE(w.add_file("two", 0644, std::string_view("22")));
    auto b = w.finish();
    std::vector<uint8_t> out = {'x'};  // unaligned prefix (e.g. someone else's data)
    append_cpio_archive(out, a);
    EXPECT_EQ(out.size(), 4 + a.size());
    std::span<const uint8_t> parts[] = {a, b};
    auto both = concat_cpio_archives(parts);
    size_t pos = 0;
    auto first = parse_one(both, pos);
    auto second = parse_one(both, pos);
    EXPECT_EQ(pos, both.size());
    ASSERT_EQ(first.size(), 1u);
    ASSERT_EQ(second.size(), 1u);
    EXPECT_EQ(first[0].name, "one");
    EXPECT_EQ(second[0].data, "22");
}

TEST(CpioWriter, ExtractsWithGnuCpio) {
    if (std::system("command -v cpio >/dev/null 2>&1") != 0) {
        std::printf("cpio is not installed: skipping the extraction check\n");
        GTEST_SKIP() << "cpio not installed";
    }
    CpioWriter w;
    ASSERT_TRUE(w.add_file("dir/sub/file.txt", 0640, std::string_view("contents\n")));
    ASSERT_TRUE(w.add_file("dir/odd", 0755, bytes(std::string_view("abc\0def", 7))));
    ASSERT_TRUE(w.add_symlink("dir/link", "sub/file.txt"));
    ASSERT_TRUE(w.add_directory("dir/empty", 0700));
    auto out = w.finish();

    TempDir t;
    {
        std::ofstream f(t.dir / "a.cpio", std::ios::binary);
        f.write(reinterpret_cast<const char*>(out.data()),
                static_cast<std::streamsize>(out.size()));
    }
    fs::create_directory(t.dir / "x");
    std::string cmd =
        "cd '" + (t.dir / "x").string() + "' && cpio -idm --quiet < ../a.cpio 2>../err";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

    auto read = [](const fs::path& p) {
        std::ifstream f(p, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    };
    EXPECT_EQ(read(t.dir / "err"), "");
    EXPECT_EQ(read(t.dir / "x/dir/sub/file.txt"), "contents\n");
    EXPECT_EQ(read(t.dir / "x/dir/odd"), std::string("abc\0def", 7));
    EXPECT_TRUE(fs::is_symlink(t.dir / "x/dir/link"));
    EXPECT_EQ(fs::read_symlink(t.dir / "x/dir/link"), "sub/file.txt");
    EXPECT_TRUE(fs::is_directory(t.dir / "x/dir/empty"));
    struct stat st {};
    ASSERT_EQ(::stat((t.dir / "x/dir/sub/file.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    ASSERT_EQ(::stat((t.dir / "x/dir/odd").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    EXPECT_EQ(st.st_mtime, 0);
}
