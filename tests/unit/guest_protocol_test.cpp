#include "protocol/guest_protocol.h"

#include <gtest/gtest.h>

using namespace kvmsandbox::guest;

TEST(GuestProtocol, RoundTripsArbitraryBytes) {
    std::string cfg;
    const std::string nasty("a\nb c:12\n\x01\xff", 12);
    append_record(cfg, "argv", "sh");
    append_record(cfg, "argv", nasty);
    append_record(cfg, "env", "");
    auto r = parse_records(cfg);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->size(), 3u);
    EXPECT_EQ((*r)[0].key, "argv");
    EXPECT_EQ((*r)[1].value, nasty);
    EXPECT_EQ((*r)[2].value, "");
}

TEST(GuestProtocol, RejectsMalformed) {
    for (std::string bad : {"argv 3:ab\n", "argv 2:ab", "argv x:ab\n", " 1:a\n", "argv 1:ab\n",
                            "argv 99999999999:a\n", "argv"}) {
        EXPECT_FALSE(parse_records(bad)) << bad;
    }
    EXPECT_TRUE(parse_records(""));
}
