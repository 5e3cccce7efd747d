#include "base/thread_role.h"

#include <atomic>

namespace kvmsandbox {

namespace {
std::atomic<ThreadRoleHook> g_hook{nullptr};
}  // namespace

const char* thread_role_name(ThreadRole role) {
    switch (role) {
        case ThreadRole::Main:
            return "main";
        case ThreadRole::Vcpu:
            return "vcpu";
        case ThreadRole::Worker:
            return "worker";
        case ThreadRole::NetRx:
            return "net-rx";
        case ThreadRole::Slirp:
            return "slirp";
    }
    return "unknown";
}

void set_thread_role_hook(ThreadRoleHook hook) {
    g_hook.store(hook, std::memory_order_release);
}

void enter_thread_role(ThreadRole role) {
    if (ThreadRoleHook h = g_hook.load(std::memory_order_acquire)) h(role);
}

}  // namespace kvmsandbox
