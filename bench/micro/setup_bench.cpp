// The host-side set-up of a sandbox run that does not involve KVM: deciding
// the kernel's modules (modules.dep, the kernel config) and building the
// initramfs (guest-init, the modules, the run's config). Measured with this
// machine's real kernel and modules, to know what caching either would save.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "sandbox/boot_cache.h"
#include "sandbox/guest_init_blob.h"
#include "sandbox/initramfs.h"
#include "sandbox/kernel_check.h"
#include "sandbox/kernel_locator.h"

namespace kvmsandbox {
namespace {

std::string host_kernel() {
    auto k = find_default_kernel(KernelSearch{});
    return k ? *k : std::string();
}

void BM_PlanKernel(benchmark::State& state) {
    const std::string kernel = host_kernel();
    if (kernel.empty() || !plan_kernel(kernel)) {
        state.SkipWithError("no usable kernel with modules under /boot and /lib/modules");
        return;
    }
    for (auto _ : state) benchmark::DoNotOptimize(plan_kernel(kernel));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PlanKernel)->Unit(benchmark::kMicrosecond);

void BM_BuildInitramfs(benchmark::State& state) {
    const std::string kernel = host_kernel();
    auto plan = plan_kernel(kernel);
    if (kernel.empty() || !plan) {
        state.SkipWithError("no usable kernel with modules under /boot and /lib/modules");
        return;
    }
    std::vector<InitramfsModule> modules;
    for (const auto& m : plan->modules)
        modules.push_back(InitramfsModule{m.file_name(), m.absolute_path});
    const std::string config(512, 'c');  // about what a run's argv and environment take
    size_t bytes = 0;
    for (auto _ : state) {
        auto r = build_sandbox_initramfs(guest_init_binary(), modules, config);
        if (!r) {
            state.SkipWithError(r.error().message.c_str());
            return;
        }
        bytes = r->size();
        benchmark::DoNotOptimize(r->data());
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
    state.counters["archive_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_BuildInitramfs)->Unit(benchmark::kMicrosecond);

// What a start pays with the boot cache warm: the key (stats and the
// kernel's release) and reading the stored image.
void BM_PrepareBootImageCached(benchmark::State& state) {
    const std::string kernel = host_kernel();
    char tmpl[] = "/tmp/kvmsandbox-bench-cache-XXXXXX";
    const char* dir = ::mkdtemp(tmpl);
    if (kernel.empty() || dir == nullptr) {
        state.SkipWithError("no usable kernel, or no temporary directory");
        return;
    }
    BootCache cache(std::string(dir) + "/boot");
    if (auto r = prepare_boot_image(cache, guest_init_binary(), kernel, {}); !r) {
        state.SkipWithError(r.error().message.c_str());
    } else {
        for (auto _ : state)
            benchmark::DoNotOptimize(prepare_boot_image(cache, guest_init_binary(), kernel, {}));
        state.SetItemsProcessed(state.iterations());
    }
    std::filesystem::remove_all(dir);
}
BENCHMARK(BM_PrepareBootImageCached)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvmsandbox
