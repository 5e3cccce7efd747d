#include "base/size_parse.h"

#include <gtest/gtest.h>

using kvmsandbox::parse_size;

TEST(SizeParse, Suffixes) {
    EXPECT_EQ(*parse_size("512M"), 512ull << 20);
    EXPECT_EQ(*parse_size("2G"), 2ull << 30);
    EXPECT_EQ(*parse_size("2GiB"), 2ull << 30);
    EXPECT_EQ(*parse_size("64k"), 64ull << 10);
    EXPECT_EQ(*parse_size("1T"), 1ull << 40);
}

TEST(SizeParse, BareNumberUsesDefaultUnit) {
    EXPECT_EQ(*parse_size("1024"), 1024ull << 20);
    EXPECT_EQ(*parse_size("4096", 1), 4096u);
}

TEST(SizeParse, RejectsGarbage) {
    for (const char* bad : {"", "M", "12Q", "-5M", "1.5G", "99999999999999999999", "20000000T"}) {
        auto r = parse_size(bad);
        EXPECT_FALSE(r.has_value()) << bad;
        if (!r) {
            EXPECT_NE(r.error().message.find("invalid size"), std::string::npos);
        }
    }
}
