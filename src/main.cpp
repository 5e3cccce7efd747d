// kvmsandbox: run a command in a KVM virtual machine, or a general VM.
#include <fmt/core.h>
#include <pthread.h>

#include <csignal>

#include <sstream>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "base/milestones.h"
#include "cli/command.h"

namespace {

int run_main(int argc, char** argv) {
    using namespace kvmsandbox;
    // The VM's event loop takes these signals through a signalfd. They must
    // be blocked in every thread, so block them before any thread exists
    // (worker pools, vCPUs): a thread that left them open would let the
    // default action kill the process instead of the signal being forwarded.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&mask, s);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);
    cli::original_argv().assign(argv, argv + argc);

    CLI::App app{"kvmsandbox: run a command, or a whole Linux system, in a KVM virtual machine",
                 "kvmsandbox"};
    app.set_version_flag("--version", std::string("kvmsandbox ") + KVMSANDBOX_VERSION);
    app.require_subcommand(0, 1);
    app.fallthrough(false);
    cli::Dispatch dispatch;
    cli::add_sandbox_form(app, dispatch);
    cli::add_run_command(app, dispatch);
    cli::add_list_command(app, dispatch);
    cli::add_stop_command(app, dispatch);
    cli::add_pause_commands(app, dispatch);
    cli::add_stat_command(app, dispatch);
    cli::add_debug_command(app, dispatch);
    cli::add_balloon_command(app, dispatch);
    cli::add_setup_command(app, dispatch);
    cli::add_version_command(app, dispatch);
    cli::add_help_command(app, dispatch);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ExtrasError& e) {
        // CLI11 lists what it could not place, "--" included; name the rest.
        std::string what = e.what();
        std::string extras;
        if (auto colon = what.find(": "); colon != std::string::npos) {
            std::istringstream words(what.substr(colon + 2));
            for (std::string w; words >> w;)
                if (w != "--") extras += (extras.empty() ? "" : " ") + w;
        }
        log::error("unknown option or argument: {} (see 'kvmsandbox --help')",
                   extras.empty() ? what : extras);
        return cli::kExitOwnError;
    } catch (const CLI::ParseError& e) {
        log::error("{} (see 'kvmsandbox --help')", e.what());
        return cli::kExitOwnError;
    }
    if (!dispatch.action) {
        fmt::print(stderr, "{}", app.help());
        return cli::kExitOwnError;
    }
    int rc = dispatch.action();
    // After the VM and everything it held are gone: "exit" includes tearing
    // them down, as a user waiting for us sees it.
    if (milestones::report_requested())
        if (auto line = milestones::report_line()) fmt::print(stderr, "kvmsandbox: {}\n", *line);
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    // Errors are values inside; this only catches what the standard library
    // may throw (allocation failure), so the user still gets one line.
    try {
        return run_main(argc, argv);
    } catch (const std::exception& e) {
        kvmsandbox::log::error("internal error: {}", e.what());
        return kvmsandbox::cli::kExitOwnError;
    }
}
