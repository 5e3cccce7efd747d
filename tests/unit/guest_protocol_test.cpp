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

TEST(GuestProtocolTime, FormatsAndParsesBack) {
    for (WallTime t :
         {WallTime{0, 0}, WallTime{1700000000, 123456789}, WallTime{kMaxTimeSec, 999999999}}) {
        std::string line = format_time_line(t);
        EXPECT_TRUE(line.ends_with('\n'));
        auto p = parse_time_line(line);
        ASSERT_TRUE(p) << line;
        EXPECT_EQ(p->sec, t.sec);
        EXPECT_EQ(p->nsec, t.nsec);
    }
    EXPECT_EQ(format_time_line({12, 5}), "time 12 5\n");
    auto p = parse_time_line("time 1 000000001");  // leading zeros are still decimal
    ASSERT_TRUE(p);
    EXPECT_EQ(p->nsec, 1);
}

TEST(GuestProtocolTime, RejectsOutOfRangeAndMalformed) {
    for (const char* bad : {"",
                            "time",
                            "time ",
                            "time 1",
                            "time 1 ",
                            "time  1 2",
                            "time 1  2",
                            "time 1 2 ",
                            "time 1 2 3",
                            "time -1 2",
                            "time 1 -2",
                            "time +1 2",
                            "time 1 1000000000",
                            "time 1 0000000001",
                            "time 253402300800 0",
                            "time 9999999999999 0",
                            "time 1 2\n\n",
                            "time 1 2\r",
                            "time x 2",
                            "Time 1 2",
                            "time 1\n2",
                            "time? 1 2"})
        EXPECT_FALSE(parse_time_line(bad)) << bad;
    EXPECT_EQ(kTimeRequest, "time?");
}
