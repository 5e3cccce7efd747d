#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "guest-init/ports.h"

using namespace kvmsandbox::guest_init;
namespace fs = std::filesystem;

namespace {

class GuestInitPorts : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/guest_init_ports_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        sys_ = root_ / "sys";
        dev_ = root_ / "dev";
        fs::create_directories(dev_);
    }
    void TearDown() override { fs::remove_all(root_); }

    // A port as the kernel shows it: class dir, name file, device node.
    void add_port(const std::string& dev, const std::string& name, bool node = true) {
        fs::path d = sys_ / "class" / "virtio-ports" / dev;
        fs::create_directories(d);
        std::ofstream(d / "name") << name;
        if (node) std::ofstream(dev_ / dev) << "";
    }

    fs::path root_, sys_, dev_;
};

}  // namespace

TEST_F(GuestInitPorts, NoClassDirectoryMeansNoPorts) {
    EXPECT_TRUE(discover_ports(sys_.string()).empty());
}

TEST_F(GuestInitPorts, DiscoversNamedPorts) {
    add_port("vport1p1", "kvmsandbox.stdin\n");
    add_port("vport1p2", "kvmsandbox.stdout\n");
    add_port("vport1p3", "");  // its name has not arrived yet
    auto ports = discover_ports(sys_.string());
    EXPECT_EQ(ports, (std::map<std::string, std::string>{{"kvmsandbox.stdin", "vport1p1"},
                                                         {"kvmsandbox.stdout", "vport1p2"}}));
}

TEST_F(GuestInitPorts, OpensThePortsInRequestOrder) {
    add_port("vport0p1", "kvmsandbox.status\n");
    add_port("vport0p2", "kvmsandbox.control\n");
    std::ofstream(dev_ / "vport0p2") << "signal 2\n";
    auto fds =
        wait_and_open_ports({{"kvmsandbox.control", O_RDONLY}, {"kvmsandbox.status", O_WRONLY}},
                            sys_.string(), dev_.string(), 1000);
    ASSERT_TRUE(fds) << fds.error();
    ASSERT_EQ(fds->size(), 2u);
    char buf[16] = {};
    EXPECT_EQ(read((*fds)[0].get(), buf, sizeof buf), 9);
    EXPECT_STREQ(buf, "signal 2\n");
    EXPECT_TRUE(fcntl((*fds)[1].get(), F_GETFD) & FD_CLOEXEC);
}

TEST_F(GuestInitPorts, TimesOutNamingTheMissingPorts) {
    add_port("vport0p1", "kvmsandbox.status\n");
    add_port("vport0p2", "kvmsandbox.stdout\n", /*node=*/false);  // node never appears
    auto fds = wait_and_open_ports({{"kvmsandbox.status", O_WRONLY},
                                    {"kvmsandbox.stdout", O_WRONLY},
                                    {"kvmsandbox.stderr", O_WRONLY}},
                                   sys_.string(), dev_.string(), 50);
    ASSERT_FALSE(fds);
    EXPECT_EQ(fds.error(), "virtio-console ports not found: kvmsandbox.stdout, kvmsandbox.stderr");
}
