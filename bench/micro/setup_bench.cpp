// The host-side set-up of a sandbox run that does not involve KVM: deciding
// the kernel's modules (modules.dep, the kernel config), building the
// initramfs (guest-init, the modules, the run's config), and putting the
// kernel into guest RAM. Measured with this machine's real kernel and
// modules, to know what caching either would save.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "arch/x86/boot_params.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/vmlinux.h"
#include "base/file.h"
#include "base/guest_memory.h"
#include "base/mmap.h"
#include "base/unique_fd.h"
#include "boot/boot_cache.h"
#include "boot/guest_init_blob.h"
#include "boot/initramfs.h"
#include "boot/kernel_check.h"
#include "boot/kernel_locator.h"
#include "boot/kernel_unpack.h"

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

// Guest RAM as Machine sets it up: anonymous, transparent huge pages asked
// for. Fresh for every iteration, since a start always loads into new RAM.
constexpr size_t kBenchRam = size_t{256} << 20;
struct FreshRam {
    Mmap map;
    GuestMemory mem;
    FreshRam() : map(std::move(*Mmap::anonymous(kBenchRam))) {
        ::madvise(map.data(), map.size(), MADV_HUGEPAGE);
        mem.add_region(MemoryRegion{0, kBenchRam, map.data()});
    }
};

// A start booting the bzImage: read the file, copy the protected-mode
// kernel (the guest decompresses it afterwards, not measured here).
void BM_LoadKernelBzImage(benchmark::State& state) {
    const std::string kernel = host_kernel();
    if (kernel.empty()) {
        state.SkipWithError("no kernel under /boot");
        return;
    }
    for (auto _ : state) {
        FreshRam ram;
        auto file = read_file(kernel, size_t{256} << 20);
        auto bz = file ? x86::parse_bzimage(*file) : Result<x86::BzImage>(fail("unreadable"));
        if (!bz || !x86::load_kernel(ram.mem, *bz, *file, bz->pref_address)) {
            state.SkipWithError("cannot load the host's bzImage");
            return;
        }
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LoadKernelBzImage)->Unit(benchmark::kMillisecond);

// A start booting the unpacked kernel: its segments preread into fresh RAM
// (the guest then has nothing to decompress).
void BM_LoadKernelUnpacked(benchmark::State& state) {
    const std::string kernel = host_kernel();
    char tmpl[] = "/tmp/kvmsandbox-bench-unpack-XXXXXX";
    const char* dir = ::mkdtemp(tmpl);
    auto path = kernel.empty() || !dir ? Result<std::string>(fail("no kernel"))
                                       : cached_vmlinux(dir, kernel);
    if (!path) {
        state.SkipWithError(("cannot unpack the host kernel: " + path.error().message).c_str());
    } else {
        UniqueFd fd(::open(path->c_str(), O_RDONLY | O_CLOEXEC));
        auto head = read_head(fd.get(), x86::kVmlinuxHeadBytes);
        auto k = head ? x86::parse_vmlinux(head->bytes, head->file_size)
                      : Result<x86::Vmlinux>(fail("unreadable"));
        for (auto _ : state) {
            FreshRam ram;
            if (!k || !x86::load_vmlinux(ram.mem, *k, fd.get(), 0x100000)) {
                state.SkipWithError("cannot load the unpacked kernel");
                break;
            }
        }
        state.SetItemsProcessed(state.iterations());
    }
    if (dir) std::filesystem::remove_all(dir);
}
BENCHMARK(BM_LoadKernelUnpacked)->Unit(benchmark::kMillisecond);

// What the first start after a kernel update pays once: unpacking with the
// host's decompressor into the cache.
void BM_UnpackKernel(benchmark::State& state) {
    const std::string kernel = host_kernel();
    auto file = kernel.empty() ? Result<std::vector<uint8_t>>(fail("no kernel"))
                               : read_file(kernel, size_t{256} << 20);
    if (!file) {
        state.SkipWithError("no kernel under /boot");
        return;
    }
    UniqueFd out(::memfd_create("bench-unpacked", MFD_CLOEXEC));
    for (auto _ : state) {
        if (auto r = unpack_kernel(*file, out.get()); !r) {
            state.SkipWithError(r.error().message.c_str());
            return;
        }
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UnpackKernel)->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace
}  // namespace kvmsandbox
