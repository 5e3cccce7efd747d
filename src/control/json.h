// The control protocol's JSON: nlohmann::ordered_json, whose objects keep
// their keys in insertion order so dumps are stable and readable, plus what
// nlohmann leaves to us: the limits a hostile peer must not get past and the
// typed lookups requests and replies need.
//
// Requests arrive from other processes, so parse_json() treats its input as
// hostile: it bounds the input size, the nesting depth, string and number
// lengths, accepts only valid UTF-8 (raw or escaped, no lone surrogates),
// rejects duplicate object keys (two readers could otherwise disagree on
// which one counts; nlohmann alone keeps the last), trailing data, NUL bytes,
// a BOM, NaN/Infinity and integers outside int64. Integers it returns are
// always int64, never nlohmann's unsigned kind.
//
// Write JSON out with dump_json(), never Json::dump(): that one throws on
// invalid UTF-8 (say, a host file name), and writes an unsigned above
// INT64_MAX in a form parse_json() rejects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace kvmsandbox::control {

using Json = nlohmann::ordered_json;

struct JsonParseLimits {
    int max_depth = 32;             // nested arrays/objects
    size_t max_string = 64 * 1024;  // bytes of one decoded string or key
    size_t max_number_chars = 64;   // characters of one number literal
};

// Parses exactly one JSON value (surrounding whitespace allowed). Fails on
// input longer than max_input bytes before looking at it. Never throws.
Result<Json> parse_json(std::string_view text, size_t max_input,
                        const JsonParseLimits& limits = {});
// Compact, no whitespace. Non-finite doubles dump as null, invalid UTF-8 in
// strings as U+FFFD and unsigned integers above INT64_MAX as doubles, so the
// output always parses again.
std::string dump_json(const Json& value);

// The value if it has that kind, else nullopt. as_int takes any integer that
// fits int64; as_double takes any number.
std::optional<int64_t> as_int(const Json& value);
std::optional<double> as_double(const Json& value);

// Object member lookup; nullptr when `obj` is not an object or has no such key.
const Json* find_member(const Json& obj, std::string_view key);
// Typed member lookup: nullopt/nullptr when absent or of another kind.
std::optional<std::string> get_string(const Json& obj, std::string_view key);
std::optional<int64_t> get_int(const Json& obj, std::string_view key);
std::optional<double> get_double(const Json& obj, std::string_view key);
std::optional<bool> get_bool(const Json& obj, std::string_view key);
const Json* get_array(const Json& obj, std::string_view key);
const Json* get_object(const Json& obj, std::string_view key);
// Same, as errors fit for a reply: "field 'key' is missing" or "field 'key' must be a string".
Result<std::string> require_string(const Json& obj, std::string_view key);
Result<int64_t> require_int(const Json& obj, std::string_view key);
Result<bool> require_bool(const Json& obj, std::string_view key);

}  // namespace kvmsandbox::control
