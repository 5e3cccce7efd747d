// Each subcommand registers its options on the CLI11 app and leaves an action
// to run after parsing, so parse errors and run errors stay apart.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

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

// A one-line explanation when this host's KVM cannot boot a stock kernel,
// naming the harness command that runs `argv` inside a TCG-hosted VM; empty
// when KVM looks usable. `argv` is the command line as the user typed it.
std::string kvm_unusable_reason(const std::vector<std::string>& argv);

// Whether a start will get as far as KVM: no `unusable_reason` and a
// /dev/kvm to open. Work that only a boot needs (unpacking the kernel into
// the cache) waits for it, so a host without KVM fails fast and keeps
// nothing.
bool kvm_reachable(const std::string& unusable_reason);

// The process's argv, kept by main() for messages that repeat it.
std::vector<std::string>& original_argv();

}  // namespace kvmsandbox::cli
