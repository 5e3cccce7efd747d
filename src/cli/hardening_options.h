// --seccomp and --user, shared by `kvmsandbox -- CMD` and `kvmsandbox run`.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "base/result.h"
#include "hardening/hardening.h"

namespace kvmsandbox::cli {

struct HardeningArgs {
    std::string seccomp = "on";
    std::string user;  // empty: stay who we are
};

void add_hardening_options(CLI::App& app, HardeningArgs& args);

// Resolves --user (which needs root: only root can become someone else) and
// reads the debug hook's environment variable.
Result<hardening::HardeningOptions> plan_hardening(const HardeningArgs& args);

}  // namespace kvmsandbox::cli
