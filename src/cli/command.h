// Each subcommand registers its options on the CLI11 app and leaves an action
// to run after parsing, so parse errors and run errors stay apart.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/result.h"

namespace kvmsandbox::cli {

struct Dispatch {
    std::function<int()> action;  // set by the chosen subcommand's callback
};

void add_run_command(CLI::App& app, Dispatch& d);
void add_version_command(CLI::App& app, Dispatch& d);
void add_sandbox_form(CLI::App& app, Dispatch& d);
void add_list_command(CLI::App& app, Dispatch& d);
void add_stop_command(CLI::App& app, Dispatch& d);
void add_pause_commands(CLI::App& app, Dispatch& d);  // pause and resume
void add_stat_command(CLI::App& app, Dispatch& d);
void add_debug_command(CLI::App& app, Dispatch& d);
void add_balloon_command(CLI::App& app, Dispatch& d);
void add_help_command(CLI::App& app, Dispatch& d);
void add_setup_command(CLI::App& app, Dispatch& d);

// The exit code for kvmsandbox's own errors (container convention).
inline constexpr int kExitOwnError = 125;

// The edge of every command: an error becomes its one line on stderr and
// its exit code.
int report_error(const Error& e);

// The process's argv, kept by main() for messages that repeat it.
std::vector<std::string>& original_argv();

}  // namespace kvmsandbox::cli
