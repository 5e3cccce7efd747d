// In-memory writer of "newc" cpio archives (the format the Linux kernel
// unpacks as an initramfs). Output is reproducible: uid/gid 0, mtime 0 and
// inode numbers in order of insertion, so the same inputs give the same bytes
// and an archive can be cached and compared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kvmsandbox {

class CpioWriter {
  public:
    // add_file_from_disk refuses larger files unless told otherwise, so a
    // wrong path cannot make us read gigabytes into memory.
    static constexpr size_t kDefaultMaxFileSize = 256u << 20;

    // Paths are relative to the archive root; one leading '/' run is accepted
    // and dropped. Empty paths, empty components ("a//b"), "." and ".."
    // components are refused, as is "TRAILER!!!" (it would end the archive).
    // Missing parent directories are added (mode 0755) once each.
    // `mode` is the permission bits (07777); the type bits come from the call.

    // Adding an existing directory again only updates its mode.
    Result<void> add_directory(std::string_view path, uint32_t mode = 0755);
    Result<void> add_file(std::string_view path, uint32_t mode, std::span<const uint8_t> data);
    Result<void> add_file(std::string_view path, uint32_t mode, std::string_view data);
    Result<void> add_file_from_disk(std::string_view path, const std::string& host_path,
                                    uint32_t mode, size_t max_size = kDefaultMaxFileSize);
    Result<void> add_symlink(std::string_view path, std::string_view target);

    // Appends the trailer and returns the archive (its size is a multiple of
    // 4). The writer is then empty and can start a new archive.
    std::vector<uint8_t> finish();

  private:
    enum class Kind { kDirectory, kFile, kSymlink };
    struct Node {
        Kind kind;
        size_t header_offset;  // where the entry's header starts in out_
    };

    Result<std::string> prepare(std::string_view path, Kind kind);
    void emit(const std::string& name, uint32_t mode, uint32_t nlink, std::span<const uint8_t> data,
              bool trailer = false);

    std::vector<uint8_t> out_;
    std::map<std::string, Node, std::less<>> nodes_;
    uint32_t next_ino_ = 1;
};

// Appends `archive` to `out`, zero-padding `out` first to a multiple of 4:
// the kernel unpacks several concatenated archives (each with its own
// trailer) but wants each to start 4-byte aligned.
void append_cpio_archive(std::vector<uint8_t>& out, std::span<const uint8_t> archive);

// Concatenates archives for the kernel, as append_cpio_archive does.
std::vector<uint8_t> concat_cpio_archives(std::span<const std::span<const uint8_t>> archives);

}  // namespace kvmsandbox
