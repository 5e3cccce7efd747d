#include "control/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_set>

namespace kvmsandbox::control {

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not
// one (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t utf8_sequence(std::string_view s, size_t i) {
    auto at = [&](size_t k) -> unsigned { return static_cast<unsigned char>(s[k]); };
    auto cont = [&](size_t k) { return k < s.size() && (at(k) & 0xC0) == 0x80; };
    unsigned c = at(i);
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!cont(i + 1) || !cont(i + 2)) return 0;
        unsigned c1 = at(i + 1);
        if (c == 0xE0 && c1 < 0xA0) return 0;  // overlong
        if (c == 0xED && c1 > 0x9F) return 0;  // UTF-16 surrogate
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
        unsigned c1 = at(i + 1);
        if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
        if (c == 0xF4 && c1 > 0x8F) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

class Parser {
  public:
    Parser(std::string_view text, const JsonParseLimits& limits) : s_(text), limits_(limits) {}

    Result<Json> parse_document() {
        skip_ws();
        auto v = value(0);
        if (!v) return v;
        skip_ws();
        if (pos_ != s_.size()) return error("trailing data after the value");
        return v;
    }

  private:
    std::unexpected<Error> error(std::string_view what) const {
        return failf("invalid JSON at offset {}: {}", pos_, what);
    }

    // Names the byte at pos_ for a message without echoing raw input.
    std::string describe_here() const {
        if (pos_ >= s_.size()) return "unexpected end of input";
        unsigned char c = static_cast<unsigned char>(s_[pos_]);
        if (c > 0x20 && c < 0x7F) return fmt::format("unexpected character '{}'", char(c));
        return fmt::format("unexpected byte 0x{:02x}", c);
    }

    void skip_ws() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }

    bool consume_literal(std::string_view lit) {
        if (s_.substr(pos_, lit.size()) != lit) return false;
        pos_ += lit.size();
        return true;
    }

    Result<Json> value(int depth) {
        if (pos_ >= s_.size()) return error("unexpected end of input");
        switch (s_[pos_]) {
            case '{':
                return object(depth + 1);
            case '[':
                return array(depth + 1);
            case '"': {
                auto str = string();
                if (!str) return std::unexpected(str.error());
                return Json(std::move(*str));
            }
            case 't':
                if (consume_literal("true")) return Json(true);
                break;
            case 'f':
                if (consume_literal("false")) return Json(false);
                break;
            case 'n':
                if (consume_literal("null")) return Json(nullptr);
                break;
            default:
                if (s_[pos_] == '-' || is_digit(s_[pos_])) return number();
                break;
        }
        return error(describe_here());
    }

    Result<Json> array(int depth) {
        if (depth > limits_.max_depth)
            return error(fmt::format("nesting deeper than {} levels", limits_.max_depth));
        ++pos_;  // '['
        Json::Array items;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return Json(std::move(items));
        }
        for (;;) {
            skip_ws();
            auto v = value(depth);
            if (!v) return v;
            items.push_back(std::move(*v));
            skip_ws();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == ']') {
                ++pos_;
                return Json(std::move(items));
            }
            return error(pos_ >= s_.size() ? "unterminated array" : "expected ',' or ']'");
        }
    }

    Result<Json> object(int depth) {
        if (depth > limits_.max_depth)
            return error(fmt::format("nesting deeper than {} levels", limits_.max_depth));
        ++pos_;  // '{'
        Json::Object members;
        // Duplicate detection is a linear scan for small objects; a large one
        // switches to a set so a hostile input cannot make it quadratic.
        constexpr size_t kLinearMax = 16;
        std::unordered_set<std::string> seen;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return Json(std::move(members));
        }
        for (;;) {
            skip_ws();
            if (pos_ >= s_.size()) return error("unterminated object");
            if (s_[pos_] != '"') return error("expected a string key");
            size_t key_pos = pos_;
            auto key = string();
            if (!key) return std::unexpected(key.error());
            bool dup = false;
            if (members.size() < kLinearMax) {
                for (const auto& m : members) dup = dup || m.first == *key;
            } else {
                if (seen.empty())
                    for (const auto& m : members) seen.insert(m.first);
                dup = !seen.insert(*key).second;
            }
            if (dup) {
                pos_ = key_pos;
                return error("duplicate key");
            }
            skip_ws();
            if (pos_ >= s_.size() || s_[pos_] != ':') return error("expected ':' after a key");
            ++pos_;
            skip_ws();
            auto v = value(depth);
            if (!v) return v;
            members.emplace_back(std::move(*key), std::move(*v));
            skip_ws();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == '}') {
                ++pos_;
                return Json(std::move(members));
            }
            return error(pos_ >= s_.size() ? "unterminated object" : "expected ',' or '}'");
        }
    }

    // Four hex digits at pos_ (after "\u").
    std::optional<uint32_t> hex4() {
        if (s_.size() - pos_ < 4) return std::nullopt;
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = s_[pos_ + i];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= static_cast<uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= static_cast<uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= static_cast<uint32_t>(c - 'A' + 10);
            else
                return std::nullopt;
        }
        pos_ += 4;
        return v;
    }

    Result<std::string> string() {
        size_t start = pos_;
        ++pos_;  // opening quote
        std::string out;
        for (;;) {
            if (out.size() > limits_.max_string) {
                pos_ = start;
                return error(fmt::format("string longer than {} bytes", limits_.max_string));
            }
            if (pos_ >= s_.size()) {
                pos_ = start;
                return error("unterminated string");
            }
            unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) return error("control character in string");
            if (c >= 0x80) {
                size_t n = utf8_sequence(s_, pos_);
                if (n == 0) return error("invalid UTF-8 in string");
                out.append(s_.substr(pos_, n));
                pos_ += n;
                continue;
            }
            if (c != '\\') {
                out += static_cast<char>(c);
                ++pos_;
                continue;
            }
            size_t esc_pos = pos_;
            ++pos_;
            if (pos_ >= s_.size()) {
                pos_ = start;
                return error("unterminated string");
            }
            char e = s_[pos_++];
            switch (e) {
                case '"':
                case '\\':
                case '/':
                    out += e;
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'u': {
                    auto hi = hex4();
                    if (!hi) {
                        pos_ = esc_pos;
                        return error("\\u needs four hex digits");
                    }
                    uint32_t cp = *hi;
                    if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        pos_ = esc_pos;
                        return error("lone low surrogate in \\u escape");
                    }
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        std::optional<uint32_t> lo;
                        if (consume_literal("\\u")) lo = hex4();
                        if (!lo || *lo < 0xDC00 || *lo > 0xDFFF) {
                            pos_ = esc_pos;
                            return error("lone high surrogate in \\u escape");
                        }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (*lo - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default:
                    pos_ = esc_pos;
                    return error("invalid escape in string");
            }
        }
    }

    Result<Json> number() {
        size_t start = pos_;
        size_t p = pos_;
        auto digits = [&] {
            size_t d = p;
            while (p < s_.size() && is_digit(s_[p])) ++p;
            return p - d;
        };
        if (s_[p] == '-') ++p;
        if (p < s_.size() && s_[p] == '0') {
            ++p;
        } else if (digits() == 0) {
            pos_ = p;
            return error("invalid number");
        }
        bool integral = true;
        if (p < s_.size() && s_[p] == '.') {
            ++p;
            integral = false;
            if (digits() == 0) {
                pos_ = p;
                return error("invalid number");
            }
        }
        if (p < s_.size() && (s_[p] == 'e' || s_[p] == 'E')) {
            ++p;
            integral = false;
            if (p < s_.size() && (s_[p] == '+' || s_[p] == '-')) ++p;
            if (digits() == 0) {
                pos_ = p;
                return error("invalid number");
            }
        }
        if (p - start > limits_.max_number_chars)
            return error(fmt::format("number longer than {} characters", limits_.max_number_chars));
        const char* first = s_.data() + start;
        const char* last = s_.data() + p;
        if (integral) {
            int64_t i = 0;
            auto r = std::from_chars(first, last, i);
            if (r.ec != std::errc() || r.ptr != last) return error("integer out of range");
            pos_ = p;
            return Json(i);
        }
        double d = 0;
        auto r = std::from_chars(first, last, d);
        if (r.ec != std::errc() || r.ptr != last || !std::isfinite(d))
            return error("number out of range");
        pos_ = p;
        return Json(d);
    }

    std::string_view s_;
    const JsonParseLimits& limits_;
    size_t pos_ = 0;
};

void dump_string(std::string& out, std::string_view s) {
    out += '"';
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            size_t n = utf8_sequence(s, i);
            if (n == 0) {
                out += "\\ufffd";
                ++i;
            } else {
                out.append(s.substr(i, n));
                i += n;
            }
            continue;
        }
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20)
                    out += fmt::format("\\u{:04x}", c);
                else
                    out += static_cast<char>(c);
        }
        ++i;
    }
    out += '"';
}

void dump_value(std::string& out, const Json& v) {
    switch (v.type()) {
        case Json::Type::Null:
            out += "null";
            break;
        case Json::Type::Bool:
            out += *v.as_bool() ? "true" : "false";
            break;
        case Json::Type::Int:
            out += fmt::format("{}", *v.as_int());
            break;
        case Json::Type::Double: {
            double d = *v.as_double();
            if (!std::isfinite(d)) {
                out += "null";
                break;
            }
            char buf[64];
            auto r = std::to_chars(buf, buf + sizeof(buf), d);
            std::string_view text(buf, static_cast<size_t>(r.ptr - buf));
            out += text;
            // Keep it a double when parsed back: "1" would come back an int.
            if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";
            break;
        }
        case Json::Type::String:
            dump_string(out, *v.as_string());
            break;
        case Json::Type::Array: {
            out += '[';
            bool first = true;
            for (const auto& item : *v.as_array()) {
                if (!first) out += ',';
                first = false;
                dump_value(out, item);
            }
            out += ']';
            break;
        }
        case Json::Type::Object: {
            out += '{';
            bool first = true;
            for (const auto& [key, item] : *v.as_object()) {
                if (!first) out += ',';
                first = false;
                dump_string(out, key);
                out += ':';
                dump_value(out, item);
            }
            out += '}';
            break;
        }
    }
}

}  // namespace

Json::Json(Object o) {
    Object members;
    members.reserve(o.size());
    for (auto& [key, value] : o) {
        auto it = std::find_if(members.begin(), members.end(),
                               [&](const Member& m) { return m.first == key; });
        if (it != members.end())
            it->second = std::move(value);
        else
            members.emplace_back(std::move(key), std::move(value));
    }
    v_ = std::move(members);
}

Json Json::object(std::initializer_list<Member> members) {
    return Json(Object(members));
}

Result<Json> Json::parse(std::string_view text, size_t max_input, const JsonParseLimits& limits) {
    if (text.size() > max_input)
        return failf("invalid JSON: input too large ({} bytes, at most {})", text.size(),
                     max_input);
    return Parser(text, limits).parse_document();
}

std::string Json::dump() const {
    std::string out;
    dump_value(out, *this);
    return out;
}

std::optional<bool> Json::as_bool() const {
    if (auto* b = std::get_if<bool>(&v_)) return *b;
    return std::nullopt;
}

std::optional<int64_t> Json::as_int() const {
    if (auto* i = std::get_if<int64_t>(&v_)) return *i;
    return std::nullopt;
}

std::optional<double> Json::as_double() const {
    if (auto* d = std::get_if<double>(&v_)) return *d;
    if (auto* i = std::get_if<int64_t>(&v_)) return static_cast<double>(*i);
    return std::nullopt;
}

const std::string* Json::as_string() const {
    return std::get_if<std::string>(&v_);
}
const Json::Array* Json::as_array() const {
    return std::get_if<Array>(&v_);
}
const Json::Object* Json::as_object() const {
    return std::get_if<Object>(&v_);
}

const Json* Json::find(std::string_view key) const {
    const Object* o = as_object();
    if (!o) return nullptr;
    for (const auto& m : *o)
        if (m.first == key) return &m.second;
    return nullptr;
}

std::optional<std::string> Json::get_string(std::string_view key) const {
    const Json* v = find(key);
    if (!v || !v->is_string()) return std::nullopt;
    return *v->as_string();
}

std::optional<int64_t> Json::get_int(std::string_view key) const {
    const Json* v = find(key);
    return v ? v->as_int() : std::nullopt;
}

std::optional<double> Json::get_double(std::string_view key) const {
    const Json* v = find(key);
    return v ? v->as_double() : std::nullopt;
}

std::optional<bool> Json::get_bool(std::string_view key) const {
    const Json* v = find(key);
    return v ? v->as_bool() : std::nullopt;
}

const Json::Array* Json::get_array(std::string_view key) const {
    const Json* v = find(key);
    return v ? v->as_array() : nullptr;
}

const Json* Json::get_object(std::string_view key) const {
    const Json* v = find(key);
    return v && v->is_object() ? v : nullptr;
}

Result<std::string> Json::require_string(std::string_view key) const {
    const Json* v = find(key);
    if (!v) return failf("field '{}' is missing", key);
    if (!v->is_string()) return failf("field '{}' must be a string", key);
    return *v->as_string();
}

Result<int64_t> Json::require_int(std::string_view key) const {
    const Json* v = find(key);
    if (!v) return failf("field '{}' is missing", key);
    if (!v->is_int()) return failf("field '{}' must be an integer", key);
    return *v->as_int();
}

Result<bool> Json::require_bool(std::string_view key) const {
    const Json* v = find(key);
    if (!v) return failf("field '{}' is missing", key);
    if (!v->is_bool()) return failf("field '{}' must be true or false", key);
    return *v->as_bool();
}

Json& Json::set(std::string key, Json value) {
    if (!is_object()) v_ = Object{};
    auto& members = std::get<Object>(v_);
    for (auto& m : members) {
        if (m.first == key) {
            m.second = std::move(value);
            return *this;
        }
    }
    members.emplace_back(std::move(key), std::move(value));
    return *this;
}

Json& Json::push_back(Json value) {
    if (!is_array()) v_ = Array{};
    std::get<Array>(v_).push_back(std::move(value));
    return *this;
}

size_t Json::size() const {
    if (auto* a = as_array()) return a->size();
    if (auto* o = as_object()) return o->size();
    return 0;
}

}  // namespace kvmsandbox::control
