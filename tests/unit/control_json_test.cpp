#include "control/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace kvmsandbox::control {
namespace {

constexpr size_t kBig = 1 << 20;

Json parse_ok(std::string_view text) {
    auto r = Json::parse(text, kBig);
    EXPECT_TRUE(r) << "input: " << text << " error: " << (r ? "" : r.error().message);
    return r ? *r : Json();
}

std::string parse_error(std::string_view text, size_t max_input = kBig,
                        const JsonParseLimits& limits = {}) {
    auto r = Json::parse(text, max_input, limits);
    EXPECT_FALSE(r) << "accepted: " << text;
    return r ? "" : r.error().message;
}

TEST(ControlJson, ParsesScalars) {
    EXPECT_TRUE(parse_ok("null").is_null());
    EXPECT_EQ(parse_ok("true").as_bool(), true);
    EXPECT_EQ(parse_ok("false").as_bool(), false);
    EXPECT_EQ(parse_ok("0").as_int(), 0);
    EXPECT_EQ(parse_ok("-0").as_int(), 0);
    EXPECT_EQ(parse_ok("42").as_int(), 42);
    EXPECT_EQ(parse_ok("-17").as_int(), -17);
    EXPECT_EQ(parse_ok("9223372036854775807").as_int(), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(parse_ok("-9223372036854775808").as_int(), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(parse_ok("0.5").as_double(), 0.5);
    EXPECT_EQ(parse_ok("-1.5e3").as_double(), -1500.0);
    EXPECT_EQ(parse_ok("1E2").as_double(), 100.0);
    EXPECT_TRUE(parse_ok("1.0").is_double());
    EXPECT_EQ(*parse_ok(R"("hi")").as_string(), "hi");
    EXPECT_EQ(*parse_ok(" \t\r\n\"x\" \n").as_string(), "x");
}

TEST(ControlJson, ParsesNestedValuesInOrder) {
    Json v = parse_ok(R"({"z":1,"a":[true,null,{"k":"v"}],"m":{}})");
    ASSERT_TRUE(v.is_object());
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v.as_object()->at(0).first, "z");
    EXPECT_EQ(v.as_object()->at(1).first, "a");
    EXPECT_EQ(v.as_object()->at(2).first, "m");
    EXPECT_EQ(v.dump(), R"({"z":1,"a":[true,null,{"k":"v"}],"m":{}})");
    ASSERT_NE(v.get_array("a"), nullptr);
    EXPECT_EQ(v.get_array("a")->size(), 3u);
    EXPECT_EQ(v.get_array("a")->at(2).get_string("k"), "v");
    EXPECT_NE(v.get_object("m"), nullptr);
}

TEST(ControlJson, DecodesEscapes) {
    EXPECT_EQ(*parse_ok(R"("a\"b\\c\/d\b\f\n\r\t")").as_string(), "a\"b\\c/d\b\f\n\r\t");
    EXPECT_EQ(*parse_ok(R"("\u0041\u00e9\u20ac")").as_string(), "A\xc3\xa9\xe2\x82\xac");
    // A surrogate pair is one code point (U+1F600).
    EXPECT_EQ(*parse_ok(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");
    EXPECT_EQ(*parse_ok(R"("\u0000")").as_string(), std::string(1, '\0'));
    // Raw UTF-8 passes through.
    EXPECT_EQ(*parse_ok("\"\xc3\xa9\xf0\x9f\x98\x80\"").as_string(), "\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(ControlJson, RejectsBadEscapesAndUtf8) {
    EXPECT_NE(parse_error(R"("\x")").find("invalid escape"), std::string::npos);
    EXPECT_NE(parse_error(R"("\u12")").find("four hex digits"), std::string::npos);
    EXPECT_NE(parse_error(R"("\uZZZZ")").find("four hex digits"), std::string::npos);
    EXPECT_NE(parse_error(R"("\ud800")").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("\ud800\u0041")").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("\ud800x")").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("\udc00")").find("lone low surrogate"), std::string::npos);
    EXPECT_NE(parse_error("\"\xff\"").find("invalid UTF-8"), std::string::npos);
    EXPECT_NE(parse_error("\"\xc0\xaf\"").find("invalid UTF-8"), std::string::npos);  // overlong
    EXPECT_NE(parse_error("\"\xed\xa0\x80\"").find("invalid UTF-8"),
              std::string::npos);  // surrogate
    EXPECT_NE(parse_error("\"\xf4\x90\x80\x80\"").find("invalid UTF-8"), std::string::npos);
    EXPECT_NE(parse_error("\"\xe2\x82\"").find("invalid UTF-8"), std::string::npos);  // truncated
    EXPECT_NE(parse_error("\"a\nb\"").find("control character"), std::string::npos);
}

TEST(ControlJson, RejectsUnterminatedInput) {
    EXPECT_NE(parse_error(R"("abc)").find("unterminated string"), std::string::npos);
    EXPECT_NE(parse_error(R"("abc\)").find("unterminated string"), std::string::npos);
    EXPECT_NE(parse_error("[1,2").find("unterminated array"), std::string::npos);
    EXPECT_NE(parse_error(R"({"a":1)").find("unterminated object"), std::string::npos);
    parse_error(R"({"a")");
    parse_error(R"({"a":)");
    parse_error("[");
    parse_error("");
    parse_error("   ");
    parse_error("tru");
    parse_error("nul");
}

TEST(ControlJson, RejectsMalformedStructure) {
    parse_error("[1,]");
    parse_error("[,1]");
    parse_error("{,}");
    parse_error(R"({"a":1,})");
    parse_error(R"({a:1})");
    parse_error(R"({"a" 1})");
    parse_error("[1 2]");
    parse_error("'x'");
    EXPECT_NE(parse_error("@").find("unexpected character '@'"), std::string::npos);
    EXPECT_NE(parse_error("\x01").find("unexpected byte 0x01"), std::string::npos);
}

TEST(ControlJson, RejectsTrailingData) {
    EXPECT_NE(parse_error("{} x").find("trailing data"), std::string::npos);
    EXPECT_NE(parse_error("1 2").find("trailing data"), std::string::npos);
    parse_error("[]]");
    parse_error("truex");
    parse_error("01");
    parse_error(std::string_view("{}\0", 3));
    EXPECT_NE(parse_error("[] []").find("offset 3"), std::string::npos);
}

TEST(ControlJson, RejectsBadAndHugeNumbers) {
    for (const char* bad : {"-", "+1", ".5", "1.", "1e", "1e+", "-x", "0x10", "NaN", "-NaN",
                            "Infinity", "-Infinity", "inf", "1.e5"})
        parse_error(bad);
    EXPECT_NE(parse_error("9223372036854775808").find("integer out of range"), std::string::npos);
    EXPECT_NE(parse_error("-9223372036854775809").find("integer out of range"), std::string::npos);
    EXPECT_NE(parse_error("1e999").find("number out of range"), std::string::npos);
    EXPECT_NE(parse_error("-1e999").find("number out of range"), std::string::npos);
    EXPECT_NE(parse_error(std::string(10000, '9')).find("number longer than"), std::string::npos);
    EXPECT_NE(parse_error("0." + std::string(10000, '1')).find("number longer than"),
              std::string::npos);
}

TEST(ControlJson, CapsNestingDepth) {
    auto nested = [](int n, char open, char close) {
        return std::string(static_cast<size_t>(n), open) +
               std::string(static_cast<size_t>(n), close);
    };
    EXPECT_TRUE(Json::parse(nested(32, '[', ']'), kBig));
    EXPECT_NE(parse_error(nested(33, '[', ']')).find("nesting deeper than 32"), std::string::npos);
    // A depth bomb fails fast instead of recursing a million frames deep.
    parse_error(std::string(1000000, '['));
    std::string objects;
    for (int i = 0; i < 100; ++i) objects += R"({"a":)";
    objects += "1" + std::string(100, '}');
    EXPECT_NE(parse_error(objects).find("nesting deeper"), std::string::npos);
    JsonParseLimits shallow;
    shallow.max_depth = 2;
    EXPECT_TRUE(Json::parse("[[1]]", kBig, shallow));
    parse_error("[[[1]]]", kBig, shallow);
}

TEST(ControlJson, CapsInputAndStringSizes) {
    EXPECT_NE(parse_error("[1,2,3]", 6).find("input too large"), std::string::npos);
    EXPECT_TRUE(Json::parse("[1,2,3]", 7));
    JsonParseLimits small;
    small.max_string = 4;
    EXPECT_TRUE(Json::parse(R"("abcd")", kBig, small));
    EXPECT_NE(parse_error(R"("abcde")", kBig, small).find("string longer than 4"),
              std::string::npos);
    EXPECT_NE(parse_error(R"({"abcde":1})", kBig, small).find("string longer"), std::string::npos);
    // The default cap applies to decoded strings, escapes included.
    std::string big = "\"" + std::string(64 * 1024 + 1, 'a') + "\"";
    parse_error(big);
}

TEST(ControlJson, RejectsDuplicateKeys) {
    EXPECT_NE(parse_error(R"({"a":1,"b":2,"a":3})").find("duplicate key"), std::string::npos);
    // Past the linear-scan size too.
    std::string many = "{";
    for (int i = 0; i < 40; ++i) many += fmt::format(R"("k{}":{},)", i, i);
    EXPECT_TRUE(Json::parse(many.substr(0, many.size() - 1) + "}", kBig));
    EXPECT_NE(parse_error(many + R"("k7":0})").find("duplicate key"), std::string::npos);
    // Equal keys in different objects are fine.
    EXPECT_TRUE(Json::parse(R"({"a":{"a":1},"b":{"a":2}})", kBig));
}

TEST(ControlJson, DumpsEscapedAndAlwaysReparseable) {
    Json s(std::string("q\"b\\n\n\t\x01\x7f\xc3\xa9"));
    EXPECT_EQ(s.dump(), "\"q\\\"b\\\\n\\n\\t\\u0001\x7f\xc3\xa9\"");
    // Invalid UTF-8 from host data (say, a file name) becomes U+FFFD.
    Json bad(
        std::string("a\xff"
                    "b\xc3"));
    EXPECT_EQ(bad.dump(), R"("a\ufffdb\ufffd")");
    auto back = Json::parse(bad.dump(), kBig);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back->as_string(),
              "a\xef\xbf\xbd"
              "b\xef\xbf\xbd");
}

TEST(ControlJson, DumpsNumbers) {
    EXPECT_EQ(Json(1.0).dump(), "1.0");
    EXPECT_EQ(Json(0.5).dump(), "0.5");
    EXPECT_EQ(Json(-3).dump(), "-3");
    EXPECT_EQ(Json(std::numeric_limits<int64_t>::min()).dump(), "-9223372036854775808");
    EXPECT_EQ(Json(std::nan("")).dump(), "null");
    EXPECT_EQ(Json(std::numeric_limits<double>::infinity()).dump(), "null");
    for (double d : {1e300, 1e-300, 0.1, 123456.789, -2.5e-7}) {
        auto back = Json::parse(Json(d).dump(), kBig);
        ASSERT_TRUE(back);
        EXPECT_TRUE(back->is_double());
        EXPECT_EQ(back->as_double(), d);
    }
    // A uint64 beyond int64 stays a (large, positive) number.
    Json huge(std::numeric_limits<uint64_t>::max());
    EXPECT_TRUE(huge.is_double());
    EXPECT_GT(*huge.as_double(), 1e19);
    EXPECT_TRUE(Json(uint64_t{5}).is_int());
    EXPECT_TRUE(Json(size_t{5}).is_int());
}

TEST(ControlJson, RoundTrips) {
    const char* text =
        R"({"v":1,"cmd":"list","args":[1,-2,3.5,"x",null,true,false,[],{}],"e":"\u0001"})";
    auto v = Json::parse(text, kBig);
    ASSERT_TRUE(v);
    auto again = Json::parse(v->dump(), kBig);
    ASSERT_TRUE(again);
    EXPECT_EQ(*v, *again);
}

TEST(ControlJson, BuildsAndAccessesObjects) {
    Json o = Json::object({{"a", 1}, {"b", "two"}, {"a", 3}});
    EXPECT_EQ(o.dump(), R"({"a":3,"b":"two"})");
    o.set("c", Json::array({1, 2})).set("b", false);
    EXPECT_EQ(o.dump(), R"({"a":3,"b":false,"c":[1,2]})");
    EXPECT_EQ(o.get_int("a"), 3);
    EXPECT_EQ(o.get_double("a"), 3.0);
    EXPECT_EQ(o.get_bool("b"), false);
    EXPECT_EQ(o.get_string("b"), std::nullopt);  // wrong type
    EXPECT_EQ(o.get_string("zzz"), std::nullopt);
    EXPECT_EQ(o.get_array("a"), nullptr);
    EXPECT_TRUE(o.contains("c"));
    EXPECT_FALSE(Json(5).contains("c"));
    EXPECT_EQ(Json(5).find("c"), nullptr);

    EXPECT_EQ(o.require_int("a"), 3);
    EXPECT_EQ(o.require_bool("b"), false);
    EXPECT_EQ(o.require_string("zzz").error().message, "field 'zzz' is missing");
    EXPECT_EQ(o.require_string("a").error().message, "field 'a' must be a string");
    EXPECT_EQ(o.require_int("b").error().message, "field 'b' must be an integer");

    Json n;
    n.set("x", nullptr);
    EXPECT_EQ(n.dump(), R"({"x":null})");
    Json a;
    a.push_back("s").push_back(Json::object());
    EXPECT_EQ(a.dump(), R"(["s",{}])");
    EXPECT_EQ(Json().dump(), "null");
    EXPECT_EQ(Json::object().dump(), "{}");
    EXPECT_EQ(Json::array().dump(), "[]");
}

}  // namespace
}  // namespace kvmsandbox::control
