#include "base/milestones.h"

#include <gtest/gtest.h>

#include <string>

namespace kvmsandbox::milestones {
namespace {

// One process, one set of milestones: the steps run in order in one test.
TEST(Milestones, ReportNeedsEveryMilestoneThenSplitsTheRun) {
    EXPECT_FALSE(report_line().has_value());
    mark(Milestone::FirstVcpuRun);
    auto first = at_ms(Milestone::FirstVcpuRun);
    ASSERT_TRUE(first.has_value());
    EXPECT_GE(*first, 0.0);
    mark(Milestone::FirstVcpuRun);  // the first one stays
    EXPECT_EQ(at_ms(Milestone::FirstVcpuRun), first);
    EXPECT_FALSE(report_line().has_value());

    set_guest_phases(1'000'000'000, 1'250'000'000);  // 250 ms from init to CMD
    mark(Milestone::GuestCmdStarted);
    mark(Milestone::StatusReceived);
    auto line = report_line();
    ASSERT_TRUE(line.has_value());
    EXPECT_NE(line->find("timing: vmm-setup "), std::string::npos) << *line;
    EXPECT_NE(line->find("init-to-cmd 250.0 ms"), std::string::npos) << *line;
    for (const char* part : {"kernel-boot ", ", cmd ", ", exit ", ", total "})
        EXPECT_NE(line->find(part), std::string::npos) << *line;
    EXPECT_LE(*at_ms(Milestone::StatusReceived), now_ms());
}

}  // namespace
}  // namespace kvmsandbox::milestones
