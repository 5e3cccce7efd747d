#include "control/json.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace kvmsandbox::control {

namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
constexpr int kNumberOverflow = 406;  // nlohmann's out_of_range.406

// Names the byte at `offset` for a message without echoing raw input.
std::string describe_byte(std::string_view text, size_t offset) {
    if (offset >= text.size()) return "unexpected end of input";
    auto c = static_cast<unsigned char>(text[offset]);
    if (c > 0x20 && c < 0x7F) return fmt::format("unexpected character '{}'", char(c));
    return fmt::format("unexpected byte 0x{:02x}", c);
}

// Our wording for one of nlohmann's syntax errors. Its own message quotes the
// input ("last read: ..."), which would put hostile bytes into replies and
// logs; ours names at most one byte.
std::string describe_syntax_error(std::string_view text, size_t offset, std::string_view what) {
    auto has = [&](std::string_view s) { return what.find(s) != std::string_view::npos; };
    if (has("; expected end of input")) return "trailing data after the value";
    if (has("ill-formed UTF-8")) return "invalid UTF-8 in string";
    if (has("missing closing quote") ||
        (has("forbidden character after backslash") && offset >= text.size()))
        return "unterminated string";
    if (has("forbidden character after backslash")) return "invalid escape in string";
    if (has("must be followed by 4 hex digits")) return "\\u needs four hex digits";
    if (has("surrogate U+D800..U+DBFF")) return "lone high surrogate in \\u escape";
    if (has("surrogate U+DC00..U+DFFF")) return "lone low surrogate in \\u escape";
    if (has("invalid string: control character")) return "control character in string";
    if (has("invalid number")) return "invalid number";
    if (has("unexpected end of input")) {
        if (has("while parsing array")) return "unterminated array";
        if (has("while parsing object")) return "unterminated object";
    }
    // nlohmann's "; expected <token>" names only token kinds, never input.
    std::string out = describe_byte(text, offset);
    if (auto e = what.rfind("; expected "); e != std::string_view::npos) out += what.substr(e);
    return out;
}

template <typename I>
size_t literal_chars(I i) {
    char buf[24];
    return static_cast<size_t>(std::to_chars(buf, buf + sizeof(buf), i).ptr - buf);
}

// Builds the value for nlohmann::json::sax_parse() while enforcing the
// limits it does not know about.
class LimitedBuilder {
  public:
    LimitedBuilder(std::string_view text, const JsonParseLimits& limits)
        : text_(text), limits_(limits) {}

    Json take() { return std::move(root_); }
    const std::string& error() const { return error_; }

    bool null() { return put(nullptr); }
    bool boolean(bool b) { return put(b); }
    bool number_integer(int64_t i) {
        // The lexer allows no leading zeros, so the literal is as long as its
        // formatted value (give or take "-0").
        return check_number_chars(literal_chars(i)) && put(i);
    }
    bool number_unsigned(uint64_t u) {
        if (!check_number_chars(literal_chars(u))) return false;
        if (u > kInt64Max) return fail("integer out of range");
        return put(static_cast<int64_t>(u));
    }
    // Also what an integer literal that overflows int64 and uint64 becomes.
    // The value is converted again with from_chars, which (unlike nlohmann's
    // strtod) reports underflow too: a nonzero literal that would come back as
    // zero or a subnormal is as out of range as one that would be infinite.
    bool number_float(double, const std::string& literal) {
        if (!check_number_chars(literal.size())) return false;
        if (literal.find_first_of(".eE") == std::string::npos) return fail("integer out of range");
        double d = 0;
        const char* end = literal.data() + literal.size();
        auto r = std::from_chars(literal.data(), end, d);
        if (r.ec != std::errc() || r.ptr != end || !std::isfinite(d))
            return fail("number out of range");
        return put(d);
    }
    bool string(std::string& s) { return check_string(s) && put(std::move(s)); }
    bool binary(Json::binary_t&) { return fail("binary value"); }  // not in JSON text

    bool start_object(size_t) {
        if (!open(Json::object())) return false;
        keys_.emplace_back();
        return true;
    }
    bool key(std::string& k) {
        if (!check_string(k)) return false;
        // A set, so a hostile object with many keys cannot make this quadratic.
        if (!keys_.back().insert(k).second) return fail("duplicate key");
        key_ = std::move(k);
        return true;
    }
    bool end_object() {
        keys_.pop_back();
        open_.pop_back();
        return true;
    }
    bool start_array(size_t) { return open(Json::array()); }
    bool end_array() {
        open_.pop_back();
        return true;
    }

    bool parse_error(size_t position, const std::string& token, const Json::exception& e) {
        // nlohmann reports a float literal beyond double's range here rather
        // than through number_float(); judge it as number_float() would.
        if (e.id == kNumberOverflow) return number_float(0, token);
        // position counts the bytes read, the offending one included.
        const size_t offset = position > 0 ? position - 1 : 0;
        error_ = fmt::format("invalid JSON at offset {}: {}", offset,
                             describe_syntax_error(text_, offset, e.what()));
        return false;
    }

  private:
    bool fail(std::string_view what) {
        error_ = fmt::format("invalid JSON: {}", what);
        return false;
    }
    bool check_number_chars(size_t n) {
        if (n <= limits_.max_number_chars) return true;
        return fail(fmt::format("number longer than {} characters", limits_.max_number_chars));
    }
    bool check_string(const std::string& s) {
        if (s.size() <= limits_.max_string) return true;
        return fail(fmt::format("string longer than {} bytes", limits_.max_string));
    }

    // Places a value in the innermost open container (or as the root);
    // returns where it went.
    Json* place(Json&& v) {
        if (open_.empty()) {
            root_ = std::move(v);
            return &root_;
        }
        Json& parent = *open_.back();
        if (parent.is_array()) {
            auto& items = parent.get_ref<Json::array_t&>();
            items.push_back(std::move(v));
            return &items.back();
        }
        // key() ruled out duplicates: append without ordered_map's linear
        // search for an existing key.
        auto& members = parent.get_ref<Json::object_t&>();
        members.emplace_back(std::move(key_), std::move(v));
        return &members.back().second;
    }
    bool put(Json&& v) {
        place(std::move(v));
        return true;
    }
    // Only the innermost open container ever grows, so pointers to the
    // enclosing ones stay valid.
    bool open(Json&& container) {
        if (open_.size() >= static_cast<size_t>(limits_.max_depth))
            return fail(fmt::format("nesting deeper than {} levels", limits_.max_depth));
        open_.push_back(place(std::move(container)));
        return true;
    }

    std::string_view text_;
    const JsonParseLimits& limits_;
    Json root_;
    std::vector<Json*> open_;
    std::vector<std::unordered_set<std::string>> keys_;  // one per open object
    std::string key_;
    std::string error_;
};

bool has_big_unsigned(const Json& v) {
    if (v.is_number_unsigned()) return v.get<uint64_t>() > kInt64Max;
    if (!v.is_structured()) return false;
    for (const auto& item : v)
        if (has_big_unsigned(item)) return true;
    return false;
}

void big_unsigned_to_double(Json& v) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > kInt64Max) {
        v = static_cast<double>(v.get<uint64_t>());
    } else if (v.is_structured()) {
        for (auto& item : v) big_unsigned_to_double(item);
    }
}

}  // namespace

Result<Json> parse_json(std::string_view text, size_t max_input, const JsonParseLimits& limits) {
    if (text.size() > max_input)
        return failf("invalid JSON: input too large ({} bytes, at most {})", text.size(),
                     max_input);
    // nlohmann takes a NUL byte for the end of the input and skips a leading
    // UTF-8 BOM; neither belongs in a message.
    if (size_t nul = text.find('\0'); nul != std::string_view::npos)
        return failf("invalid JSON at offset {}: {}", nul, describe_byte(text, nul));
    if (text.starts_with('\xEF')) return failf("invalid JSON at offset 0: unexpected byte 0xef");
    LimitedBuilder builder(text, limits);
    if (!Json::sax_parse(text.begin(), text.end(), &builder)) return fail(builder.error());
    return builder.take();
}

std::string dump_json(const Json& value) {
    auto dump = [](const Json& v) {
        return v.dump(-1, ' ', false, Json::error_handler_t::replace);
    };
    if (!has_big_unsigned(value)) return dump(value);
    Json copy = value;
    big_unsigned_to_double(copy);
    return dump(copy);
}

std::optional<int64_t> as_int(const Json& value) {
    if (value.is_number_unsigned()) {
        auto u = value.get<uint64_t>();
        if (u > kInt64Max) return std::nullopt;
        return static_cast<int64_t>(u);
    }
    if (value.is_number_integer()) return value.get<int64_t>();
    return std::nullopt;
}

std::optional<double> as_double(const Json& value) {
    if (!value.is_number()) return std::nullopt;
    return value.get<double>();
}

const Json* find_member(const Json& obj, std::string_view key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

std::optional<std::string> get_string(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    if (!v || !v->is_string()) return std::nullopt;
    return v->get_ref<const std::string&>();
}

std::optional<int64_t> get_int(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    return v ? as_int(*v) : std::nullopt;
}

std::optional<double> get_double(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    return v ? as_double(*v) : std::nullopt;
}

std::optional<bool> get_bool(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    if (!v || !v->is_boolean()) return std::nullopt;
    return v->get<bool>();
}

const Json* get_array(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    return v && v->is_array() ? v : nullptr;
}

const Json* get_object(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    return v && v->is_object() ? v : nullptr;
}

Result<std::string> require_string(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    if (!v) return failf("field '{}' is missing", key);
    if (!v->is_string()) return failf("field '{}' must be a string", key);
    return v->get<std::string>();
}

Result<int64_t> require_int(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    if (!v) return failf("field '{}' is missing", key);
    auto i = as_int(*v);
    if (!i) return failf("field '{}' must be an integer", key);
    return *i;
}

Result<bool> require_bool(const Json& obj, std::string_view key) {
    const Json* v = find_member(obj, key);
    if (!v) return failf("field '{}' is missing", key);
    if (!v->is_boolean()) return failf("field '{}' must be true or false", key);
    return v->get<bool>();
}

}  // namespace kvmsandbox::control
