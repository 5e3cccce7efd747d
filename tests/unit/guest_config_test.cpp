#include "protocol/guest_config.h"

#include <gtest/gtest.h>

#include "protocol/guest_protocol.h"

using namespace kvmsandbox;

TEST(GuestConfig, FiltersHostOnlyVariables) {
    auto out = filter_environment({"PATH=/usr/bin", "SSH_AUTH_SOCK=/run/x", "DISPLAY=:0", "A=b=c",
                                   "=bad", "noequals", "TERM=xterm"});
    EXPECT_EQ(out, (std::vector<std::string>{"PATH=/usr/bin", "A=b=c", "TERM=xterm"}));
}

TEST(GuestConfig, EncodesEverythingTheGuestNeeds) {
    GuestRunSpec spec;
    spec.argv = {"sh", "-c", "echo 'a\nb'"};
    spec.env = {"PATH=/bin"};
    spec.cwd = "/home/u/p";
    spec.uid = 1000;
    spec.gid = 100;
    spec.groups = {27, 100};
    spec.tty = true;
    spec.rows = 40;
    spec.cols = 120;
    spec.modules = {"virtio_console.ko"};
    spec.shares.symlinks.push_back({"/bin", "usr/bin"});
    Share s;
    s.tag = "kvmsb0";
    s.guest_path = "/usr";
    s.read_only = true;
    spec.shares.shares.push_back(s);
    auto recs = guest::parse_records(encode_guest_config(spec));
    ASSERT_TRUE(recs);
    std::vector<std::string> argv;
    std::string mount, uid, tty, rows;
    for (const auto& r : *recs) {
        if (r.key == "argv") argv.push_back(r.value);
        if (r.key == "mount") mount = r.value;
        if (r.key == "uid") uid = r.value;
        if (r.key == "tty") tty = r.value;
        if (r.key == "rows") rows = r.value;
    }
    EXPECT_EQ(argv, spec.argv);
    EXPECT_EQ(mount, "kvmsb0\n/usr\nro");
    EXPECT_EQ(uid, "1000");
    EXPECT_EQ(tty, "1");
    EXPECT_EQ(rows, "40");
}
