#include "cli/device_options.h"

#include <gtest/gtest.h>

namespace kvmsandbox::cli {
namespace {

TEST(DeviceOptions, Ipv4) {
    auto a = parse_ipv4("192.168.7.2");
    ASSERT_TRUE(a);
    EXPECT_EQ(format_ipv4(*a), "192.168.7.2");
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.x", "01.2.3.4", "1..2.3",
                            "1.2.3.4 ", "-1.2.3.4"})
        EXPECT_FALSE(parse_ipv4(bad)) << bad;
}

TEST(DeviceOptions, Cidr) {
    auto c = parse_cidr("10.1.2.3/16");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->prefix, 16u);
    EXPECT_FALSE(parse_cidr("10.1.2.3"));
    EXPECT_FALSE(parse_cidr("10.1.2.3/33"));
    EXPECT_FALSE(parse_cidr("10.1.2.3/0"));
    EXPECT_FALSE(parse_cidr("10.1.2.3/"));
}

TEST(DeviceOptions, Publish) {
    auto f = parse_publish("8080:80");
    ASSERT_TRUE(f);
    EXPECT_EQ(*f, (PortForward{false, "127.0.0.1", 8080, 80}));
    f = parse_publish("0.0.0.0:5353:53/udp");
    ASSERT_TRUE(f);
    EXPECT_EQ(*f, (PortForward{true, "0.0.0.0", 5353, 53}));
    EXPECT_TRUE(parse_publish("1:2/tcp"));
    for (const char* bad : {"", "80", "a:80", "80:", ":80", "0:80", "80:0", "70000:80", "1:2:3:4",
                            "x.y:1:2", "1:2/sctp"}) {
        auto r = parse_publish(bad);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            EXPECT_NE(r.error().message.find("--publish"), std::string::npos);
        }
    }
}

TEST(DeviceOptions, Disk) {
    EXPECT_EQ(*parse_disk("a.img"), (DiskSpec{"a.img", false}));
    EXPECT_EQ(*parse_disk("/x/a,b.img,ro"), (DiskSpec{"/x/a,b.img", true}));
    EXPECT_EQ(*parse_disk("a.img,rw"), (DiskSpec{"a.img", false}));
    EXPECT_FALSE(parse_disk(",ro"));
    EXPECT_FALSE(parse_disk("a.img,readonly"));
}

TEST(DeviceOptions, DefaultsAreNoNetworkWithRng) {
    auto p = plan_devices(DeviceArgs{});
    ASSERT_TRUE(p);
    EXPECT_EQ(p->net, NetMode::None);
    EXPECT_FALSE(p->guest_net);
    EXPECT_TRUE(p->rng);
    EXPECT_TRUE(p->disks.empty());
}

TEST(DeviceOptions, UserModeGetsSlirpLayout) {
    DeviceArgs a;
    a.net = "user";
    a.publish = {"8080:80", "5353:53/udp"};
    auto p = plan_devices(a);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->net, NetMode::User);
    ASSERT_TRUE(p->guest_net);
    EXPECT_EQ(format_ipv4(p->guest_net->address.addr), "10.0.2.15");
    EXPECT_EQ(format_ipv4(*p->guest_net->gateway), "10.0.2.2");
    EXPECT_EQ(format_ipv4(*p->guest_net->dns), "10.0.2.3");
    EXPECT_EQ(p->forwards.size(), 2u);

    a.ip = "10.0.2.20/24";
    EXPECT_FALSE(plan_devices(a));
}

TEST(DeviceOptions, TapTakesAddressFromOptions) {
    DeviceArgs a;
    a.net = "tap:tap0";
    auto p = plan_devices(a);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->tap_name, "tap0");
    EXPECT_FALSE(p->guest_net);  // the user configures it, or nothing does

    a.ip = "192.168.77.2/24";
    a.gateway = "192.168.77.1";
    p = plan_devices(a);
    ASSERT_TRUE(p);
    ASSERT_TRUE(p->guest_net);
    EXPECT_EQ(p->guest_net->address.prefix, 24u);
    EXPECT_EQ(format_ipv4(*p->guest_net->gateway), "192.168.77.1");
    EXPECT_FALSE(p->guest_net->dns);

    a.ip.clear();
    EXPECT_FALSE(plan_devices(a));  // a gateway without an address
}

TEST(DeviceOptions, BadCombinationsAndNames) {
    for (const char* net : {"tap:", "tap:0123456789abcdef", "tap:a/b", "bridge", "User", ""}) {
        DeviceArgs a;
        a.net = net;
        EXPECT_FALSE(plan_devices(a)) << net;
    }
    DeviceArgs a;
    a.publish = {"8080:80"};
    auto r = plan_devices(a);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("--net user"), std::string::npos);

    DeviceArgs b;
    b.ip = "1.2.3.4/8";
    EXPECT_FALSE(plan_devices(b));

    DeviceArgs c;
    c.net = "user";
    c.publish = {"8080:80", "8080:81"};
    EXPECT_FALSE(plan_devices(c));
    c.publish = {"8080:80", "8080:80/udp"};
    EXPECT_TRUE(plan_devices(c));

    DeviceArgs d;
    for (int i = 0; i < 27; ++i) d.disks.push_back("x.img");
    EXPECT_FALSE(plan_devices(d));
}

}  // namespace
}  // namespace kvmsandbox::cli
