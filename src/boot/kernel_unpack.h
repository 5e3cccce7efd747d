// The uncompressed kernel (vmlinux) inside a bzImage, unpacked once on the
// host and kept in the boot cache directory, so that every later start boots
// it directly (arch/x86/vmlinux.h) instead of making the guest decompress
// itself. The host's own decompressor (xz, zstd, gzip, ...) does the work:
// it is the same code the kernel build used, and kvmsandbox links no
// compression library.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kvmsandbox {

enum class KernelCompression { Gzip, Bzip2, Lzma, Xz, Lzo, Lz4, Zstd, Unknown };

// Recognised by the payload's magic bytes (the formats of the kernel's
// CONFIG_KERNEL_* choices).
KernelCompression detect_compression(std::span<const uint8_t> payload);

// argv of a host program that decompresses `c` from stdin to stdout; empty
// for Unknown.
std::vector<std::string> decompressor_argv(KernelCompression c);

// Decompresses the payload of the bzImage `file` into `out_fd` (a regular
// file) with the host's decompressor, and checks the result: its size must be
// the one the kernel build appended to the payload, and it must be an x86-64
// vmlinux. Errors are one line naming what failed.
Result<void> unpack_kernel(std::span<const uint8_t> file, int out_fd);

// A vmlinux for `kernel_path` in `dir`: the file there if one was unpacked
// from this kernel (same path, size, mtime, inode) and is whole, else a fresh
// one (unpack_kernel, written under a temporary name and renamed into place).
// The caller boots the bzImage when this fails (no decompressor, no room,
// an exotic kernel).
Result<std::string> cached_vmlinux(const std::string& dir, const std::string& kernel_path);

// What a start boots for `kernel_path`: the cached vmlinux in the boot cache
// directory, or "" for the bzImage itself (KVMSANDBOX_NO_CACHE=1, or
// cached_vmlinux failed; the reason goes to the debug log).
std::string unpacked_kernel_for(const std::string& kernel_path);

}  // namespace kvmsandbox
