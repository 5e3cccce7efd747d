#include "control/frame.h"

#include <gtest/gtest.h>

#include <string>

namespace kvmsandbox::control {
namespace {

std::string header(uint32_t len) {
    return {static_cast<char>(len >> 24), static_cast<char>(len >> 16), static_cast<char>(len >> 8),
            static_cast<char>(len)};
}

std::string frame(std::string_view payload) {
    auto f = encode_frame(payload);
    EXPECT_TRUE(f);
    return f ? *f : std::string();
}

TEST(ControlFrame, EncodesBigEndianLength) {
    auto f = encode_frame("hello");
    ASSERT_TRUE(f);
    EXPECT_EQ(*f, std::string("\0\0\0\5hello", 9));
    auto big = encode_frame(std::string(0x010203, 'x'));
    ASSERT_TRUE(big);
    EXPECT_EQ(big->substr(0, 4), std::string("\0\x01\x02\x03", 4));
}

TEST(ControlFrame, EncodeRefusesEmptyAndOversized) {
    EXPECT_FALSE(encode_frame(""));
    EXPECT_TRUE(encode_frame(std::string(kMaxFrame, 'x')));
    auto r = encode_frame(std::string(kMaxFrame + 1, 'x'));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("too large"), std::string::npos);
}

TEST(ControlFrame, DecodesOneFrame) {
    FrameDecoder d;
    EXPECT_TRUE(d.feed(frame("{}")));
    EXPECT_EQ(d.next(), "{}");
    EXPECT_EQ(d.next(), std::nullopt);
    EXPECT_FALSE(d.bad());
    EXPECT_EQ(d.buffered(), 0u);
    EXPECT_FALSE(d.mid_frame());
}

TEST(ControlFrame, DecodesFramesSplitAcrossReads) {
    std::string bytes = frame("first") + frame("second message");
    FrameDecoder d;
    std::vector<std::string> got;
    for (char c : bytes) {
        EXPECT_TRUE(d.feed(std::string_view(&c, 1)));
        while (auto f = d.next()) got.push_back(*f);
    }
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0], "first");
    EXPECT_EQ(got[1], "second message");
    EXPECT_FALSE(d.mid_frame());
}

TEST(ControlFrame, DecodesSeveralFramesInOneRead) {
    FrameDecoder d;
    std::string bytes;
    for (int i = 0; i < 100; ++i) bytes += frame(fmt::format("msg{}", i));
    bytes += frame("partial").substr(0, 6);
    EXPECT_TRUE(d.feed(bytes));
    for (int i = 0; i < 100; ++i) EXPECT_EQ(d.next(), fmt::format("msg{}", i));
    EXPECT_EQ(d.next(), std::nullopt);
    EXPECT_TRUE(d.mid_frame());
    EXPECT_EQ(d.buffered(), 6u);
    EXPECT_TRUE(d.feed(frame("partial").substr(6)));
    EXPECT_EQ(d.next(), "partial");
    EXPECT_EQ(d.buffered(), 0u);
}

TEST(ControlFrame, TruncatedInputYieldsNothing) {
    FrameDecoder d;
    EXPECT_TRUE(d.feed(std::string("\0\0", 2)));
    EXPECT_EQ(d.next(), std::nullopt);
    EXPECT_TRUE(d.mid_frame());
    EXPECT_TRUE(d.feed(std::string("\0\x0a", 2) + "12345"));
    EXPECT_EQ(d.next(), std::nullopt);
    EXPECT_TRUE(d.mid_frame());
    EXPECT_FALSE(d.bad());
    EXPECT_EQ(d.buffered(), 9u);
}

TEST(ControlFrame, OversizedLengthMarksStreamBad) {
    FrameDecoder d;
    // Judged as soon as the header is complete, before any payload arrives.
    EXPECT_TRUE(d.feed(header(kMaxFrame + 1).substr(0, 2)));
    EXPECT_FALSE(d.bad());
    EXPECT_FALSE(d.feed(header(kMaxFrame + 1).substr(2)));
    EXPECT_TRUE(d.bad());
    EXPECT_NE(d.error().find("too large"), std::string::npos);
    EXPECT_EQ(d.next(), std::nullopt);
    EXPECT_FALSE(d.feed("more"));
    EXPECT_EQ(d.buffered(), 0u);

    FrameDecoder huge;
    EXPECT_FALSE(huge.feed(header(0xFFFFFFFF)));
    EXPECT_TRUE(huge.bad());

    FrameDecoder exact;
    EXPECT_TRUE(exact.feed(header(kMaxFrame)));
    EXPECT_FALSE(exact.bad());
}

TEST(ControlFrame, ZeroLengthMarksStreamBad) {
    FrameDecoder d;
    EXPECT_FALSE(d.feed(header(0)));
    EXPECT_TRUE(d.bad());
    EXPECT_NE(d.error().find("zero-length"), std::string::npos);
}

TEST(ControlFrame, BadHeaderAfterGoodFrameInSameRead) {
    FrameDecoder d;
    // The good frame comes out; the bad header behind it is caught as soon as
    // the good one is taken, without waiting for more bytes.
    EXPECT_TRUE(d.feed(frame("ok") + header(0)));
    EXPECT_EQ(d.next(), "ok");
    EXPECT_TRUE(d.bad());
    EXPECT_EQ(d.next(), std::nullopt);
}

TEST(ControlFrame, SmallerLimitForTests) {
    FrameDecoder d(8);
    EXPECT_TRUE(d.feed(frame("12345678")));
    EXPECT_EQ(d.next(), "12345678");
    EXPECT_FALSE(d.feed(frame("123456789")));
}

TEST(ControlFrame, LongStreamDoesNotAccumulate) {
    FrameDecoder d;
    std::string f = frame(std::string(1000, 'a'));
    for (int i = 0; i < 5000; ++i) {
        // Feed in uneven pieces so frames straddle feeds.
        EXPECT_TRUE(d.feed(std::string_view(f).substr(0, 333)));
        EXPECT_TRUE(d.feed(std::string_view(f).substr(333)));
        auto got = d.next();
        ASSERT_TRUE(got);
        EXPECT_EQ(got->size(), 1000u);
    }
    EXPECT_EQ(d.buffered(), 0u);
}

}  // namespace
}  // namespace kvmsandbox::control
