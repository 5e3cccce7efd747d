#include "cli/instance.h"

#include <sys/stat.h>

#include <algorithm>

#include "control/client.h"
#include "control/protocol.h"

namespace kvmsandbox::cli {

Result<control::Json> call_instance(const std::string& name, const std::string& cmd,
                                    const control::Json& args, std::chrono::milliseconds timeout) {
    KS_TRY(control::validate_instance_name(name));
    KS_TRY_ASSIGN(auto dir, control::instance_dir());
    KS_TRY_ASSIGN(auto path, control::instance_socket_path(dir, name));
    auto reply = control::ControlClient::request(path, control::make_request(cmd, args), timeout);
    if (!reply) {
        // A socket nobody answers on is a dead instance's: let list clean it.
        (void)control::list_instances(dir);
        return std::unexpected(reply.error());
    }
    return control::response_result(std::move(*reply));
}

bool instance_alive(const std::string& name) {
    auto dir = control::instance_dir();
    if (!dir) return false;
    auto names = control::list_instances(*dir);
    return names && std::find(names->begin(), names->end(), name) != names->end();
}

}  // namespace kvmsandbox::cli
