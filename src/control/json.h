// A small JSON value for the control protocol. Requests arrive from other
// processes, so parse() treats its input as hostile: it bounds the input
// size, the nesting depth and string lengths, accepts only valid UTF-8
// (raw or escaped, no lone surrogates), rejects duplicate object keys (two
// readers could otherwise disagree on which one counts), trailing data,
// NaN/Infinity and integers outside int64.
//
// Objects keep their keys in insertion order so dumps are stable and
// readable; lookups are linear, which is fine for the handful of keys a
// control message has.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "base/result.h"

namespace kvmsandbox::control {

class Json;

struct JsonParseLimits {
    int max_depth = 32;             // nested arrays/objects
    size_t max_string = 64 * 1024;  // bytes of one decoded string or key
    size_t max_number_chars = 64;   // characters of one number literal
};

class Json {
  public:
    enum class Type { Null, Bool, Int, Double, String, Array, Object };
    using Array = std::vector<Json>;
    using Member = std::pair<std::string, Json>;
    using Object = std::vector<Member>;

    Json() = default;
    Json(std::nullptr_t) {}
    Json(bool b) : v_(b) {}
    // Any integer type. A uint64 above INT64_MAX becomes a double (JSON has
    // only "number"), never a wrapped negative value.
    template <std::integral I>
    requires(!std::same_as<I, bool>) Json(I i) {
        if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(int64_t)) {
            if (i > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                v_ = static_cast<double>(i);
                return;
            }
        }
        v_ = static_cast<int64_t>(i);
    }
    Json(double d) : v_(d) {}
    Json(const char* s) : v_(std::string(s)) {}
    Json(std::string s) : v_(std::move(s)) {}
    Json(std::string_view s) : v_(std::string(s)) {}
    Json(Array a) : v_(std::move(a)) {}
    // Duplicate keys collapse: the last value wins, at the first key's place.
    Json(Object o);

    static Json array(std::initializer_list<Json> items = {}) { return Json(Array(items)); }
    // Json::object({{"v", 1}, {"ok", true}}); duplicates as for Json(Object).
    static Json object(std::initializer_list<Member> members = {});

    // Parses exactly one JSON value (surrounding whitespace allowed). Fails on
    // input longer than max_input bytes before looking at it.
    static Result<Json> parse(std::string_view text, size_t max_input,
                              const JsonParseLimits& limits = {});
    // Compact, no whitespace. Non-finite doubles dump as null and invalid
    // UTF-8 in strings as U+FFFD, so the output always parses again.
    std::string dump() const;

    Type type() const { return static_cast<Type>(v_.index()); }
    bool is_null() const { return type() == Type::Null; }
    bool is_bool() const { return type() == Type::Bool; }
    bool is_int() const { return type() == Type::Int; }
    bool is_double() const { return type() == Type::Double; }
    bool is_number() const { return is_int() || is_double(); }
    bool is_string() const { return type() == Type::String; }
    bool is_array() const { return type() == Type::Array; }
    bool is_object() const { return type() == Type::Object; }

    // The value if it has that type (as_double also takes an int), else nullopt/nullptr.
    std::optional<bool> as_bool() const;
    std::optional<int64_t> as_int() const;
    std::optional<double> as_double() const;
    const std::string* as_string() const;
    const Array* as_array() const;
    const Object* as_object() const;

    // Object member lookup; nullptr when this is not an object or has no such key.
    const Json* find(std::string_view key) const;
    bool contains(std::string_view key) const { return find(key) != nullptr; }
    // Typed member lookup: nullopt/nullptr when absent or of another type.
    std::optional<std::string> get_string(std::string_view key) const;
    std::optional<int64_t> get_int(std::string_view key) const;
    std::optional<double> get_double(std::string_view key) const;
    std::optional<bool> get_bool(std::string_view key) const;
    const Array* get_array(std::string_view key) const;
    const Json* get_object(std::string_view key) const;
    // Same, as errors fit for a reply: "field 'key' is missing" or "field 'key' must be a string".
    Result<std::string> require_string(std::string_view key) const;
    Result<int64_t> require_int(std::string_view key) const;
    Result<bool> require_bool(std::string_view key) const;

    // Adds or replaces a member (a null value first becomes an empty object).
    // Returns *this for chaining. Calling it on another type is a bug: it
    // replaces the value with an object.
    Json& set(std::string key, Json value);
    // Appends to an array (a null value first becomes an empty array).
    Json& push_back(Json value);
    size_t size() const;  // elements or members; 0 for scalars

    bool operator==(const Json& o) const = default;

  private:
    std::variant<std::nullptr_t, bool, int64_t, double, std::string, Array, Object> v_;
};

}  // namespace kvmsandbox::control
