#include "guest-init/net.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "guest-init/config.h"
#include "protocol/guest_config.h"

namespace kvmsandbox::guest_init {
namespace {

std::string ip(in_addr a) {
    char buf[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}

TEST(GuestInitNet, ParsesTheNetRecord) {
    auto c = parse_net_record("10.0.2.15/24\n10.0.2.2\n10.0.2.3");
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(ip(c->address), "10.0.2.15");
    EXPECT_EQ(c->prefix, 24u);
    ASSERT_TRUE(c->gateway);
    EXPECT_EQ(ip(*c->gateway), "10.0.2.2");
    ASSERT_TRUE(c->dns);
    EXPECT_EQ(ip(*c->dns), "10.0.2.3");

    c = parse_net_record("192.168.77.2/30\n\n");
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->prefix, 30u);
    EXPECT_FALSE(c->gateway);
    EXPECT_FALSE(c->dns);
}

TEST(GuestInitNet, RefusesBadRecords) {
    for (const char* bad :
         {"", "10.0.2.15/24", "10.0.2.15/24\n10.0.2.2", "10.0.2.15\n\n", "10.0.2.15/33\n\n",
          "10.0.2.15/0\n\n", "10.0.2.15/x\n\n", "10.0.2/24\n\n", "10.0.2.15/24\nnope\n",
          "10.0.2.15/24\n\n1.2.3", "10.0.2.15/24\n\n\n", "10.0.2.15/024\n\n"})
        EXPECT_FALSE(parse_net_record(bad)) << bad;
}

TEST(GuestInitNet, Netmasks) {
    EXPECT_EQ(ip(prefix_netmask(24)), "255.255.255.0");
    EXPECT_EQ(ip(prefix_netmask(32)), "255.255.255.255");
    EXPECT_EQ(ip(prefix_netmask(1)), "128.0.0.0");
    EXPECT_EQ(ip(prefix_netmask(20)), "255.255.240.0");
}

TEST(GuestInitNet, ResolvConf) {
    in_addr a{};
    ::inet_pton(AF_INET, "10.0.2.3", &a);
    EXPECT_NE(resolv_conf_text(a).find("\nnameserver 10.0.2.3\n"), std::string::npos);
}

TEST(GuestInitNet, FindsTheFirstInterfaceThatIsNotLoopback) {
    char tmpl[] = "/tmp/kvmsandbox-net-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    ::mkdir((dir + "/lo").c_str(), 0755);
    auto none = find_interface(dir, 30);
    EXPECT_FALSE(none);
    ::mkdir((dir + "/eth1").c_str(), 0755);
    ::mkdir((dir + "/eth0").c_str(), 0755);
    auto r = find_interface(dir, 30);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, "eth0");
    std::filesystem::remove_all(dir);
}

TEST(GuestInitNet, ConfigCarriesNetAndBootRootRecords) {
    GuestRunSpec spec;
    spec.argv = {"/sbin/init"};
    spec.cwd = "/";
    spec.net = GuestRunSpec::Net{"10.0.2.15/24", "10.0.2.2", "10.0.2.3"};
    spec.boot_root = GuestRunSpec::BootRoot{"/dev/vda", "ext4"};
    auto cfg = parse_config(encode_guest_config(spec));
    ASSERT_TRUE(cfg) << cfg.error();
    ASSERT_TRUE(cfg->net);
    EXPECT_EQ(ip(cfg->net->address), "10.0.2.15");
    ASSERT_TRUE(cfg->boot_root);
    EXPECT_EQ(cfg->boot_root->device, "/dev/vda");
    EXPECT_EQ(cfg->boot_root->fstype, "ext4");

    spec.net.reset();
    spec.boot_root.reset();
    cfg = parse_config(encode_guest_config(spec));
    ASSERT_TRUE(cfg);
    EXPECT_FALSE(cfg->net);
    EXPECT_FALSE(cfg->boot_root);
}

TEST(GuestInitNet, RefusesBadBootRoots) {
    for (const char* bad :
         {"vda\next4", "/dev/../etc/x\next4", "/dev/vda\n", "/dev/vda\next4,x", "/dev/vda"})
        EXPECT_FALSE(parse_boot_root_record(bad)) << bad;
    EXPECT_TRUE(parse_boot_root_record("/dev/vda1\nxfs"));
}

}  // namespace
}  // namespace kvmsandbox::guest_init
