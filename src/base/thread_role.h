// The roles of the VM process's threads, and the point where each thread
// declares its role: the process hardening (hardening/hardening.h) hooks in
// there to drop that thread's privileges and install its seccomp filter.
// base/ only knows that there is a hook, so the threads' owners (the worker
// pool, the devices, the vCPU loop) need not depend on hardening/.
#pragma once

namespace kvmsandbox {

enum class ThreadRole {
    Main,    // the event loop: devices' host sides, control socket, signals
    Vcpu,    // KVM_RUN and the exits it returns
    Worker,  // the worker pool: 9p file I/O, virtio-blk
    NetRx,   // virtio-net's receive thread
    Slirp,   // libslirp's poll loop
};

inline constexpr ThreadRole kAllThreadRoles[] = {
    ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::Worker, ThreadRole::NetRx, ThreadRole::Slirp};

const char* thread_role_name(ThreadRole role);

using ThreadRoleHook = void (*)(ThreadRole);

// Set once by the VM process before it starts helper threads; nullptr (the
// default: unit tests, CLI clients) makes enter_thread_role a no-op.
void set_thread_role_hook(ThreadRoleHook hook);

// Called by a thread when its set-up is done and before it touches anything
// the guest controls. May block until the process has finished its set-up.
void enter_thread_role(ThreadRole role);

}  // namespace kvmsandbox
