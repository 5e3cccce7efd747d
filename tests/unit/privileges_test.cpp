// Privileges are dropped only in forked children: that cannot be undone.
#include "hardening/privileges.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "forked_child.h"

namespace kvmsandbox::hardening {
namespace {

using kvmsandbox::testing::run_in_child;

// The calling thread's effective and permitted sets, as capget reports them.
bool capget_sets(uint64_t& eff, uint64_t& prm, uint64_t& inh) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &hdr, data) != 0) return false;
    eff = data[0].effective | uint64_t{data[1].effective} << 32;
    prm = data[0].permitted | uint64_t{data[1].permitted} << 32;
    inh = data[0].inheritable | uint64_t{data[1].inheritable} << 32;
    return true;
}

uint64_t mask_of(const std::vector<cap_value_t>& caps) {
    uint64_t m = 0;
    for (cap_value_t c : caps) m |= uint64_t{1} << c;
    return m;
}

bool bounding_set_empty() {
    for (int c = 0; c <= CAP_LAST_CAP; ++c)
        if (::prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1) return false;
    return true;
}

TEST(Privileges, KeptSetsByRole) {
    EXPECT_EQ(mask_of(kept_capabilities(ThreadRole::Worker, true)),
              mask_of({CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID}));
    EXPECT_TRUE(kept_capabilities(ThreadRole::Worker, false).empty());
    for (ThreadRole r : {ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::NetRx, ThreadRole::Slirp})
        EXPECT_TRUE(kept_capabilities(r, true).empty()) << thread_role_name(r);
}

// Exit codes of the children below: 0 when capget shows what we expect.
constexpr int kCapgetFailed = 80, kWrongSets = 81, kBoundingLeft = 82, kDropFailed = 83,
              kWrongIds = 84;

TEST(Privileges, DropLeavesNothingButTheKeptSet) {
    for (bool keep : {false, true}) {
        auto r = run_in_child([keep] {
            const bool root = ::geteuid() == 0;
            ThreadPrivileges p;
            p.keep = kept_capabilities(ThreadRole::Worker, keep);
            if (auto d = drop_thread_privileges(p); !d) {
                ::dprintf(STDERR_FILENO, "%s\n", d.error().message.c_str());
                ::_exit(kDropFailed);
            }
            uint64_t eff, prm, inh;
            if (!capget_sets(eff, prm, inh)) ::_exit(kCapgetFailed);
            // A caller without capabilities keeps none, whatever it asks.
            const uint64_t want = root ? mask_of(p.keep) : 0;
            if (eff != want || prm != want || inh != 0) ::_exit(kWrongSets);
            if (root && !bounding_set_empty()) ::_exit(kBoundingLeft);
            ::_exit(0);
        });
        EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
            << "keep=" << keep << " status " << r.status << " " << r.err;
    }
}

TEST(Privileges, UserSwitchIsForThisThreadAndDropsEverything) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    auto r = run_in_child([] {
        ThreadPrivileges p;
        p.user = UserSpec{65534, 65534, {}};
        // Even the worker's set goes: the 9p server then serves as that user.
        p.keep = kept_capabilities(ThreadRole::Worker, false);
        if (!drop_thread_privileges(p)) ::_exit(kDropFailed);
        uid_t ru, eu, su;
        gid_t rg, eg, sg;
        ::getresuid(&ru, &eu, &su);
        ::getresgid(&rg, &eg, &sg);
        if (ru != 65534 || eu != 65534 || su != 65534 || rg != 65534 || eg != 65534 ||
            sg != 65534 || ::getgroups(0, nullptr) != 0)
            ::_exit(kWrongIds);
        uint64_t eff, prm, inh;
        if (!capget_sets(eff, prm, inh)) ::_exit(kCapgetFailed);
        if (eff || prm || inh) ::_exit(kWrongSets);
        if (!bounding_set_empty()) ::_exit(kBoundingLeft);
        ::_exit(0);
    });
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
        << "status " << r.status << " " << r.err;
}

TEST(Privileges, ParseUserSpec) {
    auto a = parse_user_spec("1234:5678");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->uid, 1234u);
    EXPECT_EQ(a->gid, 5678u);
    auto root = parse_user_spec("root");
    ASSERT_TRUE(root) << root.error().message;
    EXPECT_EQ(root->uid, 0u);
    EXPECT_EQ(root->gid, 0u);
    auto named = parse_user_spec("0:0");
    ASSERT_TRUE(named);
    EXPECT_TRUE(named->groups.empty());
    EXPECT_FALSE(parse_user_spec("no-such-user-kvmsandbox"));
    EXPECT_FALSE(parse_user_spec("0:no-such-group-kvmsandbox"));
    EXPECT_FALSE(parse_user_spec(":0"));
    EXPECT_FALSE(parse_user_spec("12x"));
}

}  // namespace
}  // namespace kvmsandbox::hardening
