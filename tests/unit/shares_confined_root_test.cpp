// The share confinement core on real directories: every escape a hostile
// guest could try (.., absolute and relative symlinks, loops, names with '/'),
// hidden entries, read-only refusal and mode sanitising.
#include "shares/confined_root.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "temp_dir.h"

namespace kvmsandbox::shares {
namespace {

namespace fs = std::filesystem;
using kvmsandbox::testing::TempDir;

UniqueFd open_path(const fs::path& p, int extra = 0) {
    return UniqueFd(::open(p.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC | extra));
}

void write_file(const fs::path& p, const std::string& data) {
    std::ofstream(p) << data;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

mode_t mode_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    return st.st_mode;
}

class SharesConfinedRoot : public ::testing::Test {
  protected:
    void SetUp() override {
        share_ = tmp_.path / "share";
        outside_ = tmp_.path / "outside";
        fs::create_directories(share_ / "sub" / "inner");
        fs::create_directories(outside_);
        write_file(share_ / "file", "inside");
        write_file(share_ / "sub" / "f", "sub file");
        write_file(outside_ / "secret", "outside");
    }
    ConfinedRoot make(bool read_only = false, const std::vector<std::string>& hidden = {}) {
        return ConfinedRoot(open_path(share_, O_DIRECTORY), read_only, hidden);
    }
    int dir_fd(const ConfinedRoot& root) { return root.root()->get(); }

    TempDir tmp_{"shares"};
    fs::path share_, outside_;
};

TEST_F(SharesConfinedRoot, ValidRootAndBadRoots) {
    auto root = make();
    EXPECT_TRUE(root.valid());
    EXPECT_TRUE(root.can_reopen());
    EXPECT_FALSE(root.read_only());
    EXPECT_FALSE(ConfinedRoot(UniqueFd(), false, {}).valid());
    EXPECT_FALSE(ConfinedRoot(open_path(share_ / "file"), false, {}).valid());
}

TEST_F(SharesConfinedRoot, NamesAreSingleComponents) {
    for (std::string_view bad :
         {std::string_view(""), std::string_view("."), std::string_view(".."),
          std::string_view("sub/f"), std::string_view("/etc"), std::string_view("a/"),
          std::string_view("a\0b", 3)}) {
        auto r = check_name(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error(), EINVAL) << bad;
    }
    EXPECT_TRUE(check_name("file"));
    EXPECT_TRUE(check_name("...")) << "only . and .. are special";
    EXPECT_TRUE(check_name(".hidden"));
}

TEST_F(SharesConfinedRoot, LookupRefusesSlashDotDotAndNul) {
    auto root = make();
    // "sub/f" exists on the host, but is not one component.
    for (std::string_view bad :
         {std::string_view("sub/f"), std::string_view(".."), std::string_view("../outside"),
          std::string_view("/etc"), std::string_view("file\0x", 6)}) {
        auto r = ConfinedRoot::lookup(dir_fd(root), bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error(), EINVAL) << bad;
    }
    auto ok = ConfinedRoot::lookup(dir_fd(root), "file");
    ASSERT_TRUE(ok);
    auto st = stat_fd(ok->get());
    ASSERT_TRUE(st);
    EXPECT_TRUE(S_ISREG(st->st_mode));
}

TEST_F(SharesConfinedRoot, OpenBeneathNeverLeavesTheRoot) {
    auto root = make();
    const int d = dir_fd(root);
    const std::string abs_out = (outside_ / "secret").string();
    for (const char* escape :
         {"..", "../outside/secret", "sub/../../outside/secret", abs_out.c_str(), "/etc/passwd"}) {
        auto r = ConfinedRoot::open_beneath(d, escape, O_RDONLY | O_CLOEXEC, 0);
        ASSERT_FALSE(r) << escape;
        EXPECT_EQ(r.error(), EXDEV) << escape;
    }
    // Inside, multi-component relative paths are fine (hidden paths use it).
    EXPECT_TRUE(ConfinedRoot::open_beneath(d, "sub/f", O_RDONLY | O_CLOEXEC, 0));
}

TEST_F(SharesConfinedRoot, AbsoluteSymlinkOutIsNeverFollowed) {
    fs::create_symlink(outside_, share_ / "abs");
    fs::create_symlink(outside_ / "secret", share_ / "abs_file");
    auto root = make();
    const int d = dir_fd(root);
    // A lookup onto the symlink yields the symlink itself.
    auto l = ConfinedRoot::lookup(d, "abs");
    ASSERT_TRUE(l);
    auto st = stat_fd(l->get());
    ASSERT_TRUE(st);
    EXPECT_TRUE(S_ISLNK(st->st_mode));
    // Through it: refused.
    auto through = ConfinedRoot::open_beneath(d, "abs/secret", O_RDONLY | O_CLOEXEC, 0);
    ASSERT_FALSE(through);
    EXPECT_EQ(through.error(), ELOOP);
    // Reopening the symlink for I/O would follow it: refused.
    auto f = ConfinedRoot::lookup(d, "abs_file");
    ASSERT_TRUE(f);
    auto re = root.reopen(f->get(), O_RDONLY);
    ASSERT_FALSE(re);
    EXPECT_EQ(re.error(), ELOOP);
}

TEST_F(SharesConfinedRoot, RelativeSymlinkOutIsNeverFollowed) {
    fs::create_symlink("../outside", share_ / "rel");
    fs::create_symlink("../../outside/secret", share_ / "sub" / "rel_file");
    auto root = make();
    const int d = dir_fd(root);
    auto through = ConfinedRoot::open_beneath(d, "rel/secret", O_RDONLY | O_CLOEXEC, 0);
    ASSERT_FALSE(through);
    EXPECT_EQ(through.error(), ELOOP);
    auto sub = ConfinedRoot::lookup(d, "sub");
    ASSERT_TRUE(sub);
    auto l = ConfinedRoot::lookup(sub->get(), "rel_file");
    ASSERT_TRUE(l);
    auto st = stat_fd(l->get());
    ASSERT_TRUE(st);
    EXPECT_TRUE(S_ISLNK(st->st_mode));
    EXPECT_FALSE(root.reopen(l->get(), O_RDONLY));
    // Even a symlink that stays inside is not resolved by us.
    fs::create_symlink("file", share_ / "inside_link");
    auto in = ConfinedRoot::open_beneath(d, "inside_link", O_RDONLY | O_CLOEXEC, 0);
    ASSERT_FALSE(in);
    EXPECT_EQ(in.error(), ELOOP);
}

TEST_F(SharesConfinedRoot, SymlinkLoopsFailCleanly) {
    fs::create_symlink("b", share_ / "a");
    fs::create_symlink("a", share_ / "b");
    fs::create_symlink("self", share_ / "self");
    auto root = make();
    const int d = dir_fd(root);
    for (const char* p : {"a", "a/x", "self", "self/self"}) {
        auto r = ConfinedRoot::open_beneath(d, p, O_RDONLY | O_CLOEXEC, 0);
        ASSERT_FALSE(r) << p;
        EXPECT_EQ(r.error(), ELOOP) << p;
    }
    auto l = ConfinedRoot::lookup(d, "a");
    ASSERT_TRUE(l);
    auto re = root.reopen(l->get(), O_RDONLY);
    ASSERT_FALSE(re);
    EXPECT_EQ(re.error(), ELOOP);
}

TEST_F(SharesConfinedRoot, DotDotClimbsButStaysBeneathTheRoot) {
    auto root = make();
    const int d = dir_fd(root);
    auto is = root.is_root(d);
    ASSERT_TRUE(is);
    EXPECT_TRUE(*is);
    auto inner = ConfinedRoot::open_beneath(d, "sub/inner", O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    ASSERT_TRUE(inner);
    auto up = root.parent_of(inner->get());
    ASSERT_TRUE(up);
    auto up_st = stat_fd(up->get());
    ASSERT_TRUE(up_st);
    struct stat sub_st {};
    ASSERT_EQ(::stat((share_ / "sub").c_str(), &sub_st), 0);
    EXPECT_EQ(up_st->st_ino, sub_st.st_ino);
    auto top = root.parent_of(up->get());
    ASSERT_TRUE(top);
    auto top_is_root = root.is_root(top->get());
    ASSERT_TRUE(top_is_root);
    EXPECT_TRUE(*top_is_root);
    auto sub_is_root = root.is_root(up->get());
    ASSERT_TRUE(sub_is_root);
    EXPECT_FALSE(*sub_is_root);
}

TEST_F(SharesConfinedRoot, DotDotOfADirectoryMovedOutIsRefused) {
    auto root = make();
    auto inner =
        ConfinedRoot::open_beneath(dir_fd(root), "sub/inner", O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    ASSERT_TRUE(inner);
    // The host moves the directory out of the share under the guest's fid.
    fs::rename(share_ / "sub", outside_ / "sub");
    auto up = root.parent_of(inner->get());
    ASSERT_FALSE(up);
    EXPECT_EQ(up.error(), EXDEV);
}

TEST_F(SharesConfinedRoot, ReopenOnlyRegularFilesAndDirectories) {
    ASSERT_EQ(::mkfifo((share_ / "fifo").c_str(), 0644), 0);
    auto root = make();
    const int d = dir_fd(root);
    auto fifo = ConfinedRoot::lookup(d, "fifo");
    ASSERT_TRUE(fifo);
    auto rf = root.reopen(fifo->get(), O_RDONLY);
    ASSERT_FALSE(rf);
    EXPECT_EQ(rf.error(), ENXIO);
    auto sub = ConfinedRoot::lookup(d, "sub");
    ASSERT_TRUE(sub);
    auto wd = root.reopen(sub->get(), O_WRONLY);
    ASSERT_FALSE(wd);
    EXPECT_EQ(wd.error(), EISDIR);
    EXPECT_TRUE(root.reopen(sub->get(), O_RDONLY | O_DIRECTORY));
    // The reopened fd is the walked inode, even after the name moved on.
    auto file = ConfinedRoot::lookup(d, "file");
    ASSERT_TRUE(file);
    fs::rename(share_ / "file", share_ / "renamed");
    write_file(share_ / "file", "impostor");
    auto opened = root.reopen(file->get(), O_RDWR);
    ASSERT_TRUE(opened);
    char buf[16] = {};
    ASSERT_EQ(::pread(opened->get(), buf, sizeof buf, 0), 6);
    EXPECT_EQ(std::string(buf, 6), "inside");
    // path_of names the same inode again, as O_PATH.
    auto path = root.path_of(opened->get());
    ASSERT_TRUE(path);
    auto a = stat_fd(path->get());
    auto b = stat_fd(file->get());
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->st_ino, b->st_ino);
}

TEST_F(SharesConfinedRoot, HiddenEntriesByIdentity) {
    fs::create_directories(share_ / "etc");
    write_file(share_ / "etc" / "shadow", "x");
    write_file(share_ / "etc" / "passwd", "y");
    fs::create_hard_link(share_ / "etc" / "shadow", share_ / "alias");
    fs::create_symlink("etc", share_ / "etclink");
    auto root = make(false, {"etc/shadow", "missing/file", "../outside/secret", "etclink/passwd"});
    auto shadow = stat_at(dir_fd(root), "etc/shadow");
    auto alias = stat_at(dir_fd(root), "alias");
    auto passwd = stat_at(dir_fd(root), "etc/passwd");
    ASSERT_TRUE(shadow && alias && passwd);
    EXPECT_TRUE(root.is_hidden(shadow->st_dev, shadow->st_ino));
    auto v = root.check_visible(*shadow);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error(), ENOENT);
    // A hard link is the same inode: hidden too.
    EXPECT_FALSE(root.check_visible(*alias));
    // Paths through a symlink or outside the root resolve to nothing.
    EXPECT_TRUE(root.check_visible(*passwd));
    struct stat out {};
    ASSERT_EQ(::stat((outside_ / "secret").c_str(), &out), 0);
    EXPECT_FALSE(root.is_hidden(out.st_dev, out.st_ino));
    // Without a list nothing is hidden.
    EXPECT_TRUE(make().check_visible(*shadow));
}

// The system shares' rule: others' x on the directory, others' r on the
// entry; our own credentials (root, when these tests run as root) never count.
TEST_F(SharesConfinedRoot, WorldReadableOnlyRule) {
    ASSERT_EQ(::chmod(share_.c_str(), 0755), 0);
    fs::create_directories(share_ / "closed");
    fs::create_directories(share_ / "xonly");
    write_file(share_ / "priv", "secret");
    write_file(share_ / "closed" / "in", "x");
    ASSERT_EQ(::chmod((share_ / "file").c_str(), 0644), 0);
    ASSERT_EQ(::chmod((share_ / "priv").c_str(), 0600), 0);
    ASSERT_EQ(::chmod((share_ / "closed").c_str(), 0700), 0);
    ASSERT_EQ(::chmod((share_ / "closed" / "in").c_str(), 0644), 0);
    ASSERT_EQ(::chmod((share_ / "xonly").c_str(), 0711), 0);
    fs::create_hard_link(share_ / "priv", share_ / "priv_link");
    fs::create_symlink("priv", share_ / "lnk");
    ConfinedRoot rule(open_path(share_, O_DIRECTORY), true, {}, true);
    ConfinedRoot plain(open_path(share_, O_DIRECTORY), true, {});
    EXPECT_TRUE(rule.world_readable_only());
    EXPECT_FALSE(plain.world_readable_only());
    const int d = dir_fd(rule);
    auto top = stat_fd(d);
    auto closed = stat_at(d, "closed");
    ASSERT_TRUE(top && closed);
    auto step = [&](const ConfinedRoot& r, const struct stat& dir, int dfd, const char* name) {
        auto st = stat_at(dfd, name);
        EXPECT_TRUE(st) << name;
        return st ? r.check_step(dir, *st).has_value() : false;
    };
    EXPECT_TRUE(step(rule, *top, d, "file"));
    EXPECT_TRUE(step(rule, *top, d, "lnk"));  // a link's mode means nothing
    EXPECT_FALSE(step(rule, *top, d, "priv"));
    EXPECT_FALSE(step(rule, *top, d, "priv_link"));  // same inode, same mode
    EXPECT_FALSE(step(rule, *top, d, "closed"));
    EXPECT_FALSE(step(rule, *top, d, "xonly"));  // o+x alone does not make it visible
    UniqueFd cfd = open_path(share_ / "closed", O_DIRECTORY);
    EXPECT_FALSE(step(rule, *closed, cfd.get(), "in"));  // no o+x on the way
    auto bad = rule.check_step(*top, *stat_at(d, "priv"));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), ENOENT);
    for (const char* n : {"file", "priv", "closed", "xonly"}) EXPECT_TRUE(step(plain, *top, d, n));
    EXPECT_TRUE(step(plain, *closed, cfd.get(), "in"));

    // ".." onto the root is always fine; onto an unreadable directory it is not.
    EXPECT_TRUE(rule.check_parent(*top));
    EXPECT_FALSE(rule.check_parent(*closed));
    EXPECT_TRUE(plain.check_parent(*closed));

    // readdir: the same answers from a name and a d_type.
    auto ino = [&](const char* n) { return stat_at(d, n)->st_ino; };
    EXPECT_TRUE(rule.listed(d, *top, ".", DT_DIR, top->st_ino));
    EXPECT_TRUE(rule.listed(d, *top, "..", DT_DIR, 0));
    EXPECT_TRUE(rule.listed(d, *top, "file", DT_REG, ino("file")));
    EXPECT_TRUE(rule.listed(d, *top, "lnk", DT_LNK, ino("lnk")));
    EXPECT_FALSE(rule.listed(d, *top, "priv", DT_REG, ino("priv")));
    EXPECT_FALSE(rule.listed(d, *top, "closed", DT_DIR, ino("closed")));
    EXPECT_FALSE(rule.listed(d, *top, "gone", DT_REG, 12345));  // vanished meanwhile
    EXPECT_FALSE(rule.listed(cfd.get(), *closed, "in", DT_REG, 1));
    EXPECT_TRUE(plain.listed(d, *top, "priv", DT_REG, ino("priv")));
    EXPECT_TRUE(plain.listed(cfd.get(), *closed, "in", DT_REG, 1));
}

TEST_F(SharesConfinedRoot, ReadOnlyShareRefusesEveryMutation) {
    auto root = make(true);
    const int d = dir_fd(root);
    auto expect_erofs = [](const auto& r, const char* what) {
        ASSERT_FALSE(r) << what;
        EXPECT_EQ(r.error(), EROFS) << what;
    };
    EXPECT_TRUE(root.read_only());
    expect_erofs(root.check_writable(), "check_writable");
    EXPECT_TRUE(root.check_open_flags(O_RDONLY));
    EXPECT_TRUE(root.check_open_flags(O_RDONLY | O_DIRECTORY));
    expect_erofs(root.check_open_flags(O_WRONLY), "O_WRONLY");
    expect_erofs(root.check_open_flags(O_RDWR), "O_RDWR");
    expect_erofs(root.check_open_flags(O_RDONLY | O_TRUNC), "O_TRUNC");
    expect_erofs(root.create_file(d, "new", O_WRONLY, 0644, false), "create");
    expect_erofs(root.make_dir(d, "newdir", 0755), "mkdir");
    expect_erofs(root.make_node(d, "newfifo", S_IFIFO | 0644), "mknod");
    expect_erofs(root.make_symlink(d, "newlink", "file"), "symlink");
    auto file = ConfinedRoot::lookup(d, "file");
    ASSERT_TRUE(file);
    auto st = stat_fd(file->get());
    ASSERT_TRUE(st);
    expect_erofs(root.link(file->get(), d, "hard"), "link");
    expect_erofs(root.rename(d, "file", d, "moved"), "rename");
    expect_erofs(root.rename_entry(file->get(), d, "file", d, "moved"), "rename_entry");
    expect_erofs(root.unlink(d, "file", false), "unlink");
    expect_erofs(root.remove_entry(file->get(), d, "file"), "remove_entry");
    expect_erofs(root.chmod(file->get(), *st, 0600), "chmod");
    // Nothing changed on the host.
    EXPECT_EQ(read_file(share_ / "file"), "inside");
    for (const char* n : {"new", "newdir", "newfifo", "newlink", "hard", "moved"})
        EXPECT_FALSE(fs::exists(fs::symlink_status(share_ / n))) << n;
    // Reading still works.
    EXPECT_TRUE(root.reopen(file->get(), O_RDONLY));
}

TEST_F(SharesConfinedRoot, SetIdBitsAreStripped) {
    EXPECT_EQ(sanitize_mode(04755, false), 0755u);
    EXPECT_EQ(sanitize_mode(02755, false), 0755u);
    EXPECT_EQ(sanitize_mode(06777, false), 0777u);
    EXPECT_EQ(sanitize_mode(04755, true), 0755u);
    EXPECT_EQ(sanitize_mode(02775, true), 02775u) << "set-gid on a directory is inheritance";
    EXPECT_EQ(sanitize_mode(01777, true), 01777u);
    EXPECT_EQ(sanitize_mode(S_IFREG | 0644, false), 0644u) << "type bits never pass";

    auto root = make();
    const int d = dir_fd(root);
    const mode_t old = ::umask(077);  // ours must not change what the guest asked
    auto created = root.create_file(d, "suid", O_WRONLY, 06755, false);
    auto dir = root.make_dir(d, "sgid_dir", 06775);
    auto fifo = root.make_node(d, "fifo", S_IFIFO | 04666);
    ::umask(old);
    ASSERT_TRUE(created);
    EXPECT_EQ(created->st.st_mode & 07777, 0755u);
    EXPECT_EQ(mode_of(share_ / "suid") & 07777, 0755u);
    ASSERT_TRUE(dir);
    EXPECT_EQ(mode_of(share_ / "sgid_dir") & 07777, 02775u);
    ASSERT_TRUE(fifo);
    EXPECT_TRUE(S_ISFIFO(mode_of(share_ / "fifo")));
    EXPECT_EQ(mode_of(share_ / "fifo") & 07777, 0666u);

    auto file = ConfinedRoot::lookup(d, "file");
    ASSERT_TRUE(file);
    auto st = stat_fd(file->get());
    ASSERT_TRUE(st);
    ASSERT_TRUE(root.chmod(file->get(), *st, 06711));
    EXPECT_EQ(mode_of(share_ / "file") & 07777, 0711u);
    auto sub = ConfinedRoot::lookup(d, "sub");
    ASSERT_TRUE(sub);
    auto sub_st = stat_fd(sub->get());
    ASSERT_TRUE(sub_st);
    ASSERT_TRUE(root.chmod(sub->get(), *sub_st, 06755));
    EXPECT_EQ(mode_of(share_ / "sub") & 07777, 02755u);
    // A symlink has no mode of its own to change (and chmod would follow it).
    fs::create_symlink(outside_ / "secret", share_ / "lnk");
    auto lnk = ConfinedRoot::lookup(d, "lnk");
    ASSERT_TRUE(lnk);
    auto lnk_st = stat_fd(lnk->get());
    ASSERT_TRUE(lnk_st);
    auto r = root.chmod(lnk->get(), *lnk_st, 0777);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), EOPNOTSUPP);
    EXPECT_NE(mode_of(outside_ / "secret") & 07777, 0777u);
}

TEST_F(SharesConfinedRoot, DeviceNodesAreNeverMade) {
    for (uint32_t type : {uint32_t{S_IFCHR}, uint32_t{S_IFBLK}}) {
        auto t = node_type(type | 0666);
        ASSERT_FALSE(t);
        EXPECT_EQ(t.error(), EPERM);
    }
    for (uint32_t type : {uint32_t{S_IFDIR}, uint32_t{S_IFLNK}}) {
        auto t = node_type(type | 0666);
        ASSERT_FALSE(t);
        EXPECT_EQ(t.error(), EINVAL);
    }
    EXPECT_EQ(node_type(0644), S_IFREG);
    EXPECT_EQ(node_type(S_IFREG | 0644), S_IFREG);
    EXPECT_EQ(node_type(S_IFIFO | 0644), S_IFIFO);
    EXPECT_EQ(node_type(S_IFSOCK | 0644), S_IFSOCK);

    auto root = make();
    const int d = dir_fd(root);
    // Even with the privilege to make one (tests may run as root).
    auto chr = root.make_node(d, "null", S_IFCHR | 0666);
    ASSERT_FALSE(chr);
    EXPECT_EQ(chr.error(), EPERM);
    auto blk = root.make_node(d, "disk", S_IFBLK | 0666);
    ASSERT_FALSE(blk);
    EXPECT_EQ(blk.error(), EPERM);
    EXPECT_FALSE(fs::exists(fs::symlink_status(share_ / "null")));
    EXPECT_FALSE(fs::exists(fs::symlink_status(share_ / "disk")));
    auto reg = root.make_node(d, "plain", 0640);
    ASSERT_TRUE(reg);
    EXPECT_TRUE(S_ISREG(reg->st_mode));
}

TEST_F(SharesConfinedRoot, CreateNeverGoesThroughASymlink) {
    fs::create_symlink(outside_ / "planted", share_ / "evil");
    fs::create_symlink(outside_ / "secret", share_ / "evil2");
    auto root = make();
    const int d = dir_fd(root);
    auto r = root.create_file(d, "evil", O_WRONLY, 0644, false);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ELOOP);
    auto r2 = root.create_file(d, "evil2", O_WRONLY | O_TRUNC, 0644, false);
    ASSERT_FALSE(r2);
    EXPECT_EQ(r2.error(), ELOOP);
    auto excl = root.create_file(d, "evil", O_WRONLY, 0644, true);
    ASSERT_FALSE(excl);
    EXPECT_EQ(excl.error(), EEXIST);
    EXPECT_FALSE(fs::exists(outside_ / "planted"));
    EXPECT_EQ(read_file(outside_ / "secret"), "outside");
    // Names are single components here too.
    auto slash = root.create_file(d, "sub/new", O_WRONLY, 0644, false);
    ASSERT_FALSE(slash);
    EXPECT_EQ(slash.error(), EINVAL);
    auto dotdot = root.make_dir(d, "..", 0755);
    ASSERT_FALSE(dotdot);
    EXPECT_EQ(dotdot.error(), EINVAL);
    // An existing fifo is neither opened for the guest nor blocks us.
    ASSERT_EQ(::mkfifo((share_ / "fifo").c_str(), 0644), 0);
    auto fifo = root.create_file(d, "fifo", O_RDONLY, 0644, false);
    ASSERT_FALSE(fifo);
    EXPECT_EQ(fifo.error(), ENXIO);
    // Opening an existing file works and is the same inode.
    auto existing = root.create_file(d, "file", O_RDWR, 0600, false);
    ASSERT_TRUE(existing);
    auto pst = stat_fd(existing->path.get());
    ASSERT_TRUE(pst);
    EXPECT_EQ(pst->st_ino, existing->st.st_ino);
    EXPECT_EQ(mode_of(share_ / "file") & 07777, 0644u) << "existing files keep their mode";
}

TEST_F(SharesConfinedRoot, SymlinksAreStoredAsIs) {
    auto root = make();
    const int d = dir_fd(root);
    auto empty = root.make_symlink(d, "l", "");
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error(), EINVAL);
    auto nul = root.make_symlink(d, "l", std::string("a\0b", 3));
    ASSERT_FALSE(nul);
    EXPECT_EQ(nul.error(), EINVAL);
    auto abs = root.make_symlink(d, "l", "/etc/passwd");
    ASSERT_TRUE(abs);
    EXPECT_TRUE(S_ISLNK(abs->st_mode));
    EXPECT_EQ(fs::read_symlink(share_ / "l"), "/etc/passwd");
}

TEST_F(SharesConfinedRoot, LinkRenameAndRemoveStayInside) {
    auto root = make();
    const int d = dir_fd(root);
    auto file = ConfinedRoot::lookup(d, "file");
    auto sub = ConfinedRoot::lookup(d, "sub");
    ASSERT_TRUE(file && sub);
    ASSERT_TRUE(root.link(file->get(), sub->get(), "hard"));
    EXPECT_EQ(read_file(share_ / "sub" / "hard"), "inside");
    auto dl = root.link(sub->get(), d, "dirlink");
    ASSERT_FALSE(dl);
    EXPECT_EQ(dl.error(), EPERM);
    auto bad = root.rename(d, "file", d, "../escaped");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), EINVAL);
    auto bad_unlink = root.unlink(d, "sub/f", false);
    ASSERT_FALSE(bad_unlink);
    EXPECT_EQ(bad_unlink.error(), EINVAL);

    // The entry now names another file: neither renamed nor removed.
    fs::rename(share_ / "file", share_ / "was_file");
    write_file(share_ / "file", "other");
    auto rn = root.rename_entry(file->get(), d, "file", d, "moved");
    ASSERT_FALSE(rn);
    EXPECT_EQ(rn.error(), ENOENT);
    auto rm = root.remove_entry(file->get(), d, "file");
    ASSERT_FALSE(rm);
    EXPECT_EQ(rm.error(), ENOENT);
    EXPECT_EQ(read_file(share_ / "file"), "other");
    // Its own entry: renamed, then removed.
    ASSERT_TRUE(root.rename_entry(file->get(), d, "was_file", sub->get(), "moved"));
    EXPECT_EQ(read_file(share_ / "sub" / "moved"), "inside");
    ASSERT_TRUE(root.remove_entry(file->get(), sub->get(), "moved"));
    EXPECT_FALSE(fs::exists(share_ / "sub" / "moved"));
    auto inner = ConfinedRoot::lookup(sub->get(), "inner");
    ASSERT_TRUE(inner);
    ASSERT_TRUE(root.remove_entry(inner->get(), sub->get(), "inner"));
    EXPECT_FALSE(fs::exists(share_ / "sub" / "inner"));
    ASSERT_TRUE(root.unlink(sub->get(), "f", false));
    EXPECT_FALSE(fs::exists(share_ / "sub" / "f"));
}

}  // namespace
}  // namespace kvmsandbox::shares
