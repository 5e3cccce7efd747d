#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/unique_fd.h"

namespace kvmsandbox {

Result<std::vector<uint8_t>> read_file(const std::string& path, size_t max) {
    int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) return fail_errno(fmt::format("cannot open {}", path));
    UniqueFd fd(raw);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno(fmt::format("cannot stat {}", path));
    if (!S_ISREG(st.st_mode)) return failf("{} is not a regular file", path);
    if (static_cast<uint64_t>(st.st_size) > max)
        return failf("{} is too large ({} bytes, at most {} allowed)", path, st.st_size, max);

    std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno(fmt::format("cannot read {}", path));
        }
        // The file shrank while we read it: return what is there rather than garbage.
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    data.resize(done);
    return data;
}

Result<FileHead> read_head(int fd, size_t max) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return fail_errno("cannot stat");
    if (!S_ISREG(st.st_mode)) return fail("not a regular file");
    FileHead h;
    h.file_size = static_cast<uint64_t>(st.st_size);
    h.bytes.resize(static_cast<size_t>(std::min<uint64_t>(max, h.file_size)));
    size_t done = 0;
    while (done < h.bytes.size()) {
        ssize_t n =
            ::pread(fd, h.bytes.data() + done, h.bytes.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("cannot read");
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    h.bytes.resize(done);
    return h;
}

}  // namespace kvmsandbox
