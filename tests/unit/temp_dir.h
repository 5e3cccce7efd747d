// A fresh directory under /tmp for one test, removed with everything in it
// when the test ends.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace kvmsandbox::testing {

struct TempDir {
    std::filesystem::path path;
    // `name` goes into the directory's name, to tell leftovers apart.
    explicit TempDir(const std::string& name = "test") {
        std::string tmpl = "/tmp/kvmsandbox-" + name + "-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp " + tmpl);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

}  // namespace kvmsandbox::testing
