#include "cli/command.h"

#include "base/log.h"

namespace kvmsandbox::cli {

std::vector<std::string>& original_argv() {
    static std::vector<std::string> v;
    return v;
}

int report_error(const Error& e) {
    log::error("{}", e.message);
    return e.exit_code;
}

}  // namespace kvmsandbox::cli
