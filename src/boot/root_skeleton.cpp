#include "boot/root_skeleton.h"

namespace kvmsandbox {

const std::vector<SkeletonDir>& root_skeleton_dirs() {
    static const std::vector<SkeletonDir> dirs = {
        {"etc", 0755}, {"usr", 0755}, {"home", 0755}, {"root", 0700}, {"mnt", 0755},
        {"opt", 0755}, {"srv", 0755}, {"var", 0755},  {"tmp", 01777}, {"var/tmp", 01777},
    };
    return dirs;
}

}  // namespace kvmsandbox
