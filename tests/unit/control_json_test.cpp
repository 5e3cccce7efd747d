#include "control/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace kvmsandbox::control {
namespace {

constexpr size_t kBig = 1 << 20;

Json parse_ok(std::string_view text) {
    auto r = parse_json(text, kBig);
    EXPECT_TRUE(r) << "input: " << text << " error: " << (r ? "" : r.error().message);
    return r ? *r : Json();
}

std::string parse_error(std::string_view text, size_t max_input = kBig,
                        const JsonParseLimits& limits = {}) {
    auto r = parse_json(text, max_input, limits);
    EXPECT_FALSE(r) << "accepted: " << text;
    return r ? "" : r.error().message;
}

std::optional<bool> as_bool(const Json& v) {
    if (!v.is_boolean()) return std::nullopt;
    return v.get<bool>();
}

std::optional<std::string> as_string(const Json& v) {
    if (!v.is_string()) return std::nullopt;
    return v.get<std::string>();
}

std::string nested(int n, char open, char close) {
    return std::string(static_cast<size_t>(n), open) + std::string(static_cast<size_t>(n), close);
}

TEST(ControlJson, ParsesScalars) {
    EXPECT_TRUE(parse_ok("null").is_null());
    EXPECT_EQ(as_bool(parse_ok("true")), true);
    EXPECT_EQ(as_bool(parse_ok("false")), false);
    EXPECT_EQ(as_int(parse_ok("0")), 0);
    EXPECT_EQ(as_int(parse_ok("-0")), 0);
    EXPECT_EQ(as_int(parse_ok("42")), 42);
    EXPECT_EQ(as_int(parse_ok("-17")), -17);
    EXPECT_EQ(as_int(parse_ok("9223372036854775807")), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(as_int(parse_ok("-9223372036854775808")), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(as_double(parse_ok("0.5")), 0.5);
    EXPECT_EQ(as_double(parse_ok("-1.5e3")), -1500.0);
    EXPECT_EQ(as_double(parse_ok("1E2")), 100.0);
    EXPECT_TRUE(parse_ok("1.0").is_number_float());
    EXPECT_EQ(as_string(parse_ok(R"("hi")")), "hi");
    EXPECT_EQ(as_string(parse_ok(" \t\r\n\"x\" \n")), "x");
}

TEST(ControlJson, ParsedIntegersAreSigned) {
    // Never nlohmann's unsigned kind, whatever the sign.
    for (const char* text : {"0", "42", "9223372036854775807", "-5"}) {
        Json v = parse_ok(text);
        EXPECT_TRUE(v.is_number_integer()) << text;
        EXPECT_FALSE(v.is_number_unsigned()) << text;
    }
    Json nested = parse_ok(R"({"a":[1,{"b":2}]})");
    EXPECT_FALSE(nested["a"][0].is_number_unsigned());
    EXPECT_FALSE(nested["a"][1]["b"].is_number_unsigned());
}

TEST(ControlJson, ParsesNestedValuesInOrder) {
    Json v = parse_ok(R"({"z":1,"a":[true,null,{"k":"v"}],"m":{}})");
    ASSERT_TRUE(v.is_object());
    ASSERT_EQ(v.size(), 3u);
    std::vector<std::string> keys;
    for (const auto& [key, value] : v.items()) keys.push_back(key);
    EXPECT_EQ(keys, (std::vector<std::string>{"z", "a", "m"}));
    EXPECT_EQ(dump_json(v), R"({"z":1,"a":[true,null,{"k":"v"}],"m":{}})");
    ASSERT_NE(get_array(v, "a"), nullptr);
    EXPECT_EQ(get_array(v, "a")->size(), 3u);
    EXPECT_EQ(get_string(get_array(v, "a")->at(2), "k"), "v");
    EXPECT_NE(get_object(v, "m"), nullptr);
}

TEST(ControlJson, DecodesEscapes) {
    EXPECT_EQ(as_string(parse_ok(R"("a\"b\\c\/d\b\f\n\r\t")")), "a\"b\\c/d\b\f\n\r\t");
    EXPECT_EQ(as_string(parse_ok(R"("\u0041\u00e9\u20ac")")), "A\xc3\xa9\xe2\x82\xac");
    // A surrogate pair is one code point (U+1F600).
    EXPECT_EQ(as_string(parse_ok(R"("\ud83d\ude00")")), "\xf0\x9f\x98\x80");
    // The highest pair, U+10FFFF.
    EXPECT_EQ(as_string(parse_ok(R"("\udbff\udfff")")), "\xf4\x8f\xbf\xbf");
    EXPECT_EQ(as_string(parse_ok(R"("\u0000")")), std::string(1, '\0'));
    // Raw UTF-8 passes through.
    EXPECT_EQ(as_string(parse_ok("\"\xc3\xa9\xf0\x9f\x98\x80\"")), "\xc3\xa9\xf0\x9f\x98\x80");
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

TEST(ControlJson, RejectsLoneSurrogatesAnywhere) {
    // Two highs, a low first, a high cut by the end of the string, in keys
    // and deep inside values.
    EXPECT_NE(parse_error(R"("\ud800\ud800")").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("\udfff\ud800")").find("lone low surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("a\udbff")").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"({"\ud800":1})").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"({"a":[1,{"b":"\udc00"}]})").find("lone low surrogate"),
              std::string::npos);
}

TEST(ControlJson, RejectsInvalidUtf8Anywhere) {
    EXPECT_NE(parse_error("\"\xe0\x80\xaf\"").find("invalid UTF-8"),
              std::string::npos);  // overlong
    EXPECT_NE(parse_error("\"\xf0\x80\x80\xaf\"").find("invalid UTF-8"), std::string::npos);
    EXPECT_NE(parse_error("\"\x80\"").find("invalid UTF-8"),
              std::string::npos);  // lone continuation
    EXPECT_NE(parse_error("\"\xf5\x80\x80\x80\"").find("invalid UTF-8"), std::string::npos);
    EXPECT_NE(parse_error("{\"k\xff\":1}").find("invalid UTF-8"), std::string::npos);  // in a key
    EXPECT_NE(parse_error("[1,{\"a\":[\"ok\",\"\xc3\"]}]").find("invalid UTF-8"),
              std::string::npos);
    // Outside strings a non-ASCII byte is just unexpected.
    EXPECT_NE(parse_error("[\xc3\xa9]").find("unexpected byte 0xc3"), std::string::npos);
    // A UTF-8 BOM is not JSON text either.
    EXPECT_NE(parse_error("\xef\xbb\xbf{}").find("unexpected byte 0xef"), std::string::npos);
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
    parse_error("[1] // comment");
    parse_error("/* comment */ 1");
    EXPECT_NE(parse_error("@").find("unexpected character '@'"), std::string::npos);
    EXPECT_NE(parse_error("\x01").find("unexpected byte 0x01"), std::string::npos);
}

TEST(ControlJson, ErrorsDoNotEchoTheInput) {
    for (const char* text : {R"(["secret" x])", R"({"secret":1,"secret":2})", R"({"secret" 1})",
                             R"(["secret\q"])", "[\"secret\xff\"]"}) {
        std::string e = parse_error(text);
        EXPECT_EQ(e.find("secret"), std::string::npos) << e;
    }
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

TEST(ControlJson, RejectsTrailingGarbageOfEveryKind) {
    for (const char* text : {"{}}", "[]x", R"("a""b")", R"({} "abc)", "null null", "1,", "[],",
                             "{}\xff", "0 0", "{} {"})
        EXPECT_NE(parse_error(text).find("trailing data"), std::string::npos) << text;
    // A NUL byte ends nothing: after the value, inside it, or alone.
    EXPECT_NE(parse_error(std::string_view("1\0", 2)).find("unexpected byte 0x00"),
              std::string::npos);
    EXPECT_NE(parse_error(std::string_view("[1,\0]", 5)).find("offset 3"), std::string::npos);
    parse_error(std::string_view("\0", 1));
    parse_error(std::string_view("\"a\0\"", 4));
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

TEST(ControlJson, RejectsIntegersPastInt64AtEveryWidth) {
    // Past int64 but within uint64, past uint64, and far past both.
    for (const char* text :
         {"18446744073709551615", "18446744073709551616", "-18446744073709551616",
          "99999999999999999999999999999999", R"({"a":[9223372036854775808]})"})
        EXPECT_NE(parse_error(text).find("integer out of range"), std::string::npos) << text;
    // As a double the same magnitude is fine.
    EXPECT_EQ(as_double(parse_ok("18446744073709551616.0")), 18446744073709551616.0);
    EXPECT_EQ(as_double(parse_ok("1e19")), 1e19);
    EXPECT_EQ(as_double(parse_ok("1.7976931348623157e308")), std::numeric_limits<double>::max());
    EXPECT_NE(parse_error("1.8e308").find("number out of range"), std::string::npos);
    // Underflow too: a nonzero literal must not come back as zero.
    EXPECT_NE(parse_error("1e-400").find("number out of range"), std::string::npos);
    EXPECT_NE(parse_error("-1.5e-3111111").find("number out of range"), std::string::npos);
    EXPECT_EQ(as_double(parse_ok("0e-400")), 0.0);
    EXPECT_EQ(as_double(parse_ok("2.2250738585072014e-308")), std::numeric_limits<double>::min());
    // The character cap counts the whole literal, exponent included.
    JsonParseLimits small;
    small.max_number_chars = 5;
    EXPECT_TRUE(parse_json("1.5e3", kBig, small));
    EXPECT_TRUE(parse_json("12345", kBig, small));
    EXPECT_NE(parse_error("1.5e10", kBig, small).find("number longer than 5"), std::string::npos);
    EXPECT_NE(parse_error("123456", kBig, small).find("number longer than 5"), std::string::npos);
    EXPECT_NE(parse_error("-12345", kBig, small).find("number longer than 5"), std::string::npos);
}

TEST(ControlJson, CapsNestingDepth) {
    EXPECT_TRUE(parse_json(nested(32, '[', ']'), kBig));
    EXPECT_NE(parse_error(nested(33, '[', ']')).find("nesting deeper than 32"), std::string::npos);
    // A depth bomb fails fast instead of recursing a million frames deep.
    parse_error(std::string(1000000, '['));
    std::string objects;
    for (int i = 0; i < 100; ++i) objects += R"({"a":)";
    objects += "1" + std::string(100, '}');
    EXPECT_NE(parse_error(objects).find("nesting deeper"), std::string::npos);
    JsonParseLimits shallow;
    shallow.max_depth = 2;
    EXPECT_TRUE(parse_json("[[1]]", kBig, shallow));
    parse_error("[[[1]]]", kBig, shallow);
}

TEST(ControlJson, CapsNestingDepthExactlyAt32) {
    auto objects = [](int n) {
        std::string s;
        for (int i = 0; i < n; ++i) s += R"({"a":)";
        return s + "1" + std::string(static_cast<size_t>(n), '}');
    };
    EXPECT_TRUE(parse_json(objects(32), kBig));
    EXPECT_NE(parse_error(objects(33)).find("nesting deeper than 32"), std::string::npos);
    // Arrays and objects count alike; empty containers count too.
    std::string mixed;
    for (int i = 0; i < 16; ++i) mixed += R"([{"k":)";
    std::string close;
    for (int i = 0; i < 16; ++i) close += "}]";
    EXPECT_TRUE(parse_json(mixed + "null" + close, kBig));
    EXPECT_NE(parse_error(mixed + "[]" + close).find("nesting deeper than 32"), std::string::npos);
    EXPECT_TRUE(parse_json(nested(31, '[', ']').insert(31, "{}"), kBig));
    EXPECT_NE(parse_error(nested(32, '[', ']').insert(32, "{}")).find("nesting deeper"),
              std::string::npos);
    // Depth is nesting, not count: many siblings at depth 32 are fine.
    std::string wide = nested(31, '[', ']');
    std::string siblings = "[]";
    for (int i = 0; i < 1000; ++i) siblings += ",[]";
    EXPECT_TRUE(parse_json(wide.insert(31, siblings), kBig));
}

TEST(ControlJson, CapsInputAndStringSizes) {
    EXPECT_NE(parse_error("[1,2,3]", 6).find("input too large"), std::string::npos);
    EXPECT_TRUE(parse_json("[1,2,3]", 7));
    JsonParseLimits small;
    small.max_string = 4;
    EXPECT_TRUE(parse_json(R"("abcd")", kBig, small));
    EXPECT_NE(parse_error(R"("abcde")", kBig, small).find("string longer than 4"),
              std::string::npos);
    EXPECT_NE(parse_error(R"({"abcde":1})", kBig, small).find("string longer"), std::string::npos);
    // The default cap applies to decoded strings, escapes included.
    std::string big = "\"" + std::string(64 * 1024 + 1, 'a') + "\"";
    parse_error(big);
}

TEST(ControlJson, CapsDecodedStringLengthExactly) {
    // Escapes count as what they decode to: 4 bytes of \u escape are one byte.
    std::string at_cap = "\"" + std::string(64 * 1024 - 1, 'a') + "\\u0041\"";
    EXPECT_TRUE(parse_json(at_cap, kBig));
    std::string over = "\"" + std::string(64 * 1024, 'a') + "\\u0041\"";
    EXPECT_NE(parse_error(over).find("string longer than 65536"), std::string::npos);
    // Multi-byte characters count in bytes.
    JsonParseLimits small;
    small.max_string = 4;
    EXPECT_TRUE(parse_json("\"\xc3\xa9\xc3\xa9\"", kBig, small));
    parse_error("\"\xc3\xa9\xc3\xa9x\"", kBig, small);
    EXPECT_TRUE(parse_json(R"("\u00e9\u00e9")", kBig, small));
    parse_error(R"("\u20ac\u20ac")", kBig, small);
}

TEST(ControlJson, RejectsDuplicateKeys) {
    EXPECT_NE(parse_error(R"({"a":1,"b":2,"a":3})").find("duplicate key"), std::string::npos);
    // Past the linear-scan size too.
    std::string many = "{";
    for (int i = 0; i < 40; ++i) many += fmt::format(R"("k{}":{},)", i, i);
    EXPECT_TRUE(parse_json(many.substr(0, many.size() - 1) + "}", kBig));
    EXPECT_NE(parse_error(many + R"("k7":0})").find("duplicate key"), std::string::npos);
    // Equal keys in different objects are fine.
    EXPECT_TRUE(parse_json(R"({"a":{"a":1},"b":{"a":2}})", kBig));
}

TEST(ControlJson, RejectsDuplicateKeysAtDepth) {
    EXPECT_NE(parse_error(R"({"x":{"a":1,"a":2}})").find("duplicate key"), std::string::npos);
    EXPECT_NE(parse_error(R"([[{"a":1,"b":[],"a":{}}]])").find("duplicate key"), std::string::npos);
    // Same key after a nested object closed: the outer object's keys count.
    EXPECT_NE(parse_error(R"({"a":{"b":1},"a":2})").find("duplicate key"), std::string::npos);
    // A key seen only in a closed inner object is not a duplicate outside.
    EXPECT_TRUE(parse_json(R"({"o":{"a":1},"a":2})", kBig));
    // Escaped and raw spellings of the same key are the same key.
    EXPECT_NE(parse_error(R"({"a":1,"\u0061":2})").find("duplicate key"), std::string::npos);
    EXPECT_NE(parse_error("{\"\xc3\xa9\":1,\"\\u00e9\":2}").find("duplicate key"),
              std::string::npos);
    // At the deepest allowed level.
    std::string deep = nested(31, '[', ']');
    EXPECT_NE(parse_error(deep.insert(31, R"({"k":1,"k":1})")).find("duplicate key"),
              std::string::npos);
    // Many distinct keys are fine (and not quadratic).
    std::string wide = "{";
    for (int i = 0; i < 50000; ++i) wide += fmt::format(R"("{}":0,)", i);
    wide.back() = '}';
    auto v = parse_json(wide, kBig);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->size(), 50000u);
    EXPECT_EQ(get_int(*v, "49999"), 0);
}

TEST(ControlJson, DumpsEscapedAndAlwaysReparseable) {
    Json s(std::string("q\"b\\n\n\t\x01\x7f\xc3\xa9"));
    EXPECT_EQ(dump_json(s), "\"q\\\"b\\\\n\\n\\t\\u0001\x7f\xc3\xa9\"");
    // Invalid UTF-8 from host data (say, a file name) becomes U+FFFD.
    Json bad(
        std::string("a\xff"
                    "b\xc3"));
    EXPECT_EQ(dump_json(bad),
              "\"a\xef\xbf\xbd"
              "b\xef\xbf\xbd\"");
    auto back = parse_json(dump_json(bad), kBig);
    ASSERT_TRUE(back);
    EXPECT_EQ(as_string(*back),
              "a\xef\xbf\xbd"
              "b\xef\xbf\xbd");
    // In keys and nested values too.
    Json deep = Json::object({{"k\xff", Json::array({"\xed\xa0\x80", 1})}});
    auto deep_back = parse_json(dump_json(deep), kBig);
    ASSERT_TRUE(deep_back);
    EXPECT_EQ(dump_json(*deep_back), dump_json(deep));
}

TEST(ControlJson, DumpsNumbers) {
    EXPECT_EQ(dump_json(Json(1.0)), "1.0");
    EXPECT_EQ(dump_json(Json(0.5)), "0.5");
    EXPECT_EQ(dump_json(Json(-3)), "-3");
    EXPECT_EQ(dump_json(Json(std::numeric_limits<int64_t>::min())), "-9223372036854775808");
    EXPECT_EQ(dump_json(Json(std::nan(""))), "null");
    EXPECT_EQ(dump_json(Json(std::numeric_limits<double>::infinity())), "null");
    for (double d : {1e300, 1e-300, 0.1, 123456.789, -2.5e-7}) {
        auto back = parse_json(dump_json(Json(d)), kBig);
        ASSERT_TRUE(back);
        EXPECT_TRUE(back->is_number_float());
        EXPECT_EQ(as_double(*back), d);
    }
    // A uint64 beyond int64 stays a (large, positive) number, never an
    // integer parse_json() would refuse or a wrapped negative one.
    Json huge(std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(as_int(huge), std::nullopt);
    EXPECT_GT(*as_double(huge), 1e19);
    auto huge_back = parse_json(dump_json(Json::array({huge})), kBig);
    ASSERT_TRUE(huge_back);
    EXPECT_TRUE(huge_back->at(0).is_number_float());
    EXPECT_GT(*as_double(huge_back->at(0)), 1e19);
    EXPECT_EQ(as_int(Json(uint64_t{5})), 5);
    EXPECT_EQ(as_int(Json(size_t{5})), 5);
    EXPECT_EQ(dump_json(Json(uint64_t{5})), "5");
}

TEST(ControlJson, RoundTrips) {
    const char* text =
        R"({"v":1,"cmd":"list","args":[1,-2,3.5,"x",null,true,false,[],{}],"e":"\u0001"})";
    auto v = parse_json(text, kBig);
    ASSERT_TRUE(v);
    auto again = parse_json(dump_json(*v), kBig);
    ASSERT_TRUE(again);
    EXPECT_EQ(*v, *again);
    // nlohmann's == takes 1 for 1.0; the text tells them apart.
    EXPECT_EQ(dump_json(*again), dump_json(*v));
}

TEST(ControlJson, BuildsAndAccessesObjects) {
    Json o = Json::object({{"a", 1}, {"b", "two"}});
    o["a"] = 3;  // replaced in place
    EXPECT_EQ(dump_json(o), R"({"a":3,"b":"two"})");
    o["c"] = Json::array({1, 2});
    o["b"] = false;
    EXPECT_EQ(dump_json(o), R"({"a":3,"b":false,"c":[1,2]})");
    EXPECT_EQ(get_int(o, "a"), 3);
    EXPECT_EQ(get_double(o, "a"), 3.0);
    EXPECT_EQ(get_bool(o, "b"), false);
    EXPECT_EQ(get_string(o, "b"), std::nullopt);  // wrong type
    EXPECT_EQ(get_string(o, "zzz"), std::nullopt);
    EXPECT_EQ(get_array(o, "a"), nullptr);
    EXPECT_EQ(get_object(o, "c"), nullptr);
    EXPECT_EQ(get_int(o, "b"), std::nullopt);
    EXPECT_EQ(get_bool(o, "a"), std::nullopt);
    EXPECT_NE(find_member(o, "c"), nullptr);
    EXPECT_EQ(find_member(Json(5), "c"), nullptr);
    EXPECT_EQ(get_string(Json::array({"a"}), "a"), std::nullopt);

    EXPECT_EQ(require_int(o, "a"), 3);
    EXPECT_EQ(require_bool(o, "b"), false);
    EXPECT_EQ(require_string(o, "zzz").error().message, "field 'zzz' is missing");
    EXPECT_EQ(require_string(o, "a").error().message, "field 'a' must be a string");
    EXPECT_EQ(require_int(o, "b").error().message, "field 'b' must be an integer");
    EXPECT_EQ(require_bool(o, "a").error().message, "field 'a' must be true or false");

    Json n;
    n["x"] = nullptr;
    EXPECT_EQ(dump_json(n), R"({"x":null})");
    Json a;
    a.push_back("s");
    a.push_back(Json::object());
    EXPECT_EQ(dump_json(a), R"(["s",{}])");
    EXPECT_EQ(dump_json(Json()), "null");
    EXPECT_EQ(dump_json(Json::object()), "{}");
    EXPECT_EQ(dump_json(Json::array()), "[]");
}

}  // namespace
}  // namespace kvmsandbox::control
