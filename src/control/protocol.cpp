#include "control/protocol.h"

namespace kvmsandbox::control {

namespace {

constexpr size_t kMaxErrorMessage = 1000;

Json with_members(Json base, const Json& extra, std::initializer_list<std::string_view> reserved) {
    if (!extra.is_object()) return base;
    for (const auto& [key, value] : extra.items()) {
        bool skip = false;
        for (auto r : reserved) skip = skip || key == r;
        if (!skip) base[key] = value;
    }
    return base;
}

Result<void> check_version(const Json& msg, std::string_view what) {
    if (!msg.is_object()) return failf("{} is not a JSON object", what);
    const Json* v = find_member(msg, "v");
    if (!v) return failf("{} has no protocol version", what);
    auto version = as_int(*v);
    if (!version) return failf("{} has an invalid protocol version", what);
    if (*version != kProtocolVersion) return failf("protocol version {} not supported", *version);
    return {};
}

}  // namespace

Json make_request(std::string_view cmd, const Json& args) {
    return with_members(Json::object({{"v", kProtocolVersion}, {"cmd", cmd}}), args, {"v", "cmd"});
}

Json ok_response(const Json& fields) {
    return with_members(Json::object({{"v", kProtocolVersion}, {"ok", true}}), fields,
                        {"v", "ok", "error"});
}

Json error_response(std::string_view message) {
    std::string line;
    line.reserve(std::min(message.size(), kMaxErrorMessage));
    for (char c : message) {
        if (line.size() >= kMaxErrorMessage) {
            line += "...";
            break;
        }
        // Control characters (newlines first of all) would break the one-line
        // promise to whoever prints the message.
        line += static_cast<unsigned char>(c) < 0x20 || c == 0x7F ? ' ' : c;
    }
    if (line.empty()) line = "unknown error";
    return Json::object({{"v", kProtocolVersion}, {"ok", false}, {"error", std::move(line)}});
}

Result<std::string> validate_request(const Json& request) {
    KS_TRY(check_version(request, "request"));
    const Json* cmd = find_member(request, "cmd");
    if (!cmd) return fail("request has no command");
    if (!cmd->is_string() || cmd->get_ref<const std::string&>().empty())
        return fail("request has an invalid command");
    return cmd->get<std::string>();
}

Result<void> validate_response(const Json& response) {
    KS_TRY(check_version(response, "response"));
    auto ok = get_bool(response, "ok");
    if (!ok) return fail("response has no valid 'ok' field");
    if (!*ok && !get_string(response, "error")) return fail("error response has no message");
    return {};
}

Result<Json> response_result(Json response) {
    KS_TRY(validate_response(response));
    if (*get_bool(response, "ok")) return response;
    return fail(*get_string(response, "error"), 1);
}

}  // namespace kvmsandbox::control
