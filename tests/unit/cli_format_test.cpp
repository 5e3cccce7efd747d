#include "cli/format.h"

#include <gtest/gtest.h>

namespace kvmsandbox::cli {
namespace {

TEST(CliFormat, Bytes) {
    EXPECT_EQ(format_bytes(0), "0B");
    EXPECT_EQ(format_bytes(1000), "1000B");
    EXPECT_EQ(format_bytes(3000), "2.9K");
    EXPECT_EQ(format_bytes(64ull << 20), "64M");
    EXPECT_EQ(format_bytes(1536ull << 20), "1.5G");
    EXPECT_EQ(format_bytes(2ull << 30), "2G");
}

TEST(CliFormat, Durations) {
    EXPECT_EQ(format_duration(-1), "0s");
    EXPECT_EQ(format_duration(2.7), "2s");
    EXPECT_EQ(format_duration(75.2), "1m15s");
    EXPECT_EQ(format_duration(3700), "1h01m");
    EXPECT_EQ(format_duration(90000), "1d01h");
}

}  // namespace
}  // namespace kvmsandbox::cli
