#include "sandbox/session.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <optional>
#include <span>
#include <string>

#include "protocol/guest_protocol.h"

namespace kvmsandbox {
namespace {

TEST(SessionPhaseLine, ParsesBothClocks) {
    auto p = parse_phase_line("phase init=1500000000 cmd=1600000000\n");
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->first, 1500000000u);
    EXPECT_EQ(p->second, 1600000000u);
}

TEST(SessionPhaseLine, RejectsAnythingElse) {
    for (const char* bad :
         {"exit 0", "phase", "phase init=1", "phase init= cmd=2",
          "phase init=1 cmd=", "phase init=x cmd=2", "phase init=1 cmd=2x", "phase init=5 cmd=4",
          "phase init=-1 cmd=2", "phase init=99999999999999999999999 cmd=1"})
        EXPECT_FALSE(parse_phase_line(bad).has_value()) << bad;
}

TEST(SessionPhaseLine, IsNotAStatus) {
    // A guest sending the phase line first must not end the run with it.
    EXPECT_FALSE(parse_status_line("phase init=1 cmd=2").has_value());
}

TEST(SessionStatusLine, ExitCodes) {
    for (int code : {0, 1, 42, 255}) {
        auto s = parse_status_line("exit " + std::to_string(code));
        ASSERT_TRUE(s.has_value()) << code;
        EXPECT_EQ(s->exit_code, code);
        EXPECT_EQ(s->message, "");
    }
}

TEST(SessionStatusLine, TrailingNewlineAccepted) {
    auto s = parse_status_line("exit 3\n");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 3);
    s = parse_status_line("signal 15\r\n");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 143);
}

TEST(SessionStatusLine, SignalsMapTo128PlusN) {
    auto s = parse_status_line("signal 9");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 137);
    EXPECT_EQ(s->message, "");
    s = parse_status_line("signal 1");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 129);
    s = parse_status_line("signal 64");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 192);
}

TEST(SessionStatusLine, ErrorCarriesCodeAndMessage) {
    auto s = parse_status_line("error 127 foo: command not found");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 127);
    EXPECT_EQ(s->message, "foo: command not found");
    s = parse_status_line("error 126 bar: Permission denied\n");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 126);
    EXPECT_EQ(s->message, "bar: Permission denied");
    s = parse_status_line("error 125");
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->exit_code, 125);
    EXPECT_EQ(s->message, "");
}

TEST(SessionStatusLine, MalformedLinesRejected) {
    for (const char* line : {"",
                             "exit",
                             "exit ",
                             "exit 256",
                             "exit -1",
                             "exit 1x",
                             "exit x",
                             "exit +1",
                             "exit  1",
                             "exit 1 2",
                             "exit 99999999999999999999",
                             "signal 0",
                             "signal -9",
                             "signal 65",
                             "signal",
                             "bogus 1",
                             "EXIT 1",
                             " exit 1",
                             "error 0 x",
                             "error 256 x",
                             "error x msg",
                             "error",
                             "error  1 x"}) {
        EXPECT_FALSE(parse_status_line(line).has_value()) << '"' << line << '"';
    }
}

// The guest's "time?" requests: answered one each, capped, never a status.
TEST(SessionTimeRequest, AnsweredOnceEachUpToTheCap) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(null);
    SandboxSession session(**loop, null.get(), null.get(), null.get(), false);
    ConsolePortBackend* status = nullptr;
    for (const auto& p : session.port_specs())
        if (p.name == guest::kPortStatus) status = p.backend;
    ASSERT_NE(status, nullptr);
    auto guest_writes = [&](std::string bytes) {
        std::span<uint8_t> b(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size());
        status->on_guest_output(std::span<const std::span<uint8_t>>(&b, 1));
    };
    guest_writes("time?\n");
    EXPECT_EQ(session.time_answers(), 1u);
    EXPECT_FALSE(session.status().has_value());
    // Malformed requests are not requests.
    guest_writes("time? \n");
    EXPECT_EQ(session.time_answers(), 1u);
    // A flood is answered kMaxTimeAnswers times in all, one per request.
    std::string flood;
    for (int i = 0; i < 100; ++i) flood += "time?\n";
    guest_writes(flood);
    EXPECT_EQ(session.time_answers(), guest::kMaxTimeAnswers);
    // The answers are sent on the loop (no console attached: they queue).
    (*loop)->post([&] { (*loop)->request_stop(); });
    ASSERT_TRUE((*loop)->run());
}

TEST(SessionTimeRequest, StatusAfterRequestStillCounts) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    SandboxSession session(**loop, null.get(), null.get(), null.get(), false);
    for (const auto& p : session.port_specs()) {
        if (p.name != guest::kPortStatus) continue;
        std::string bytes = "time?\nexit 7\n";
        std::span<uint8_t> b(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size());
        p.backend->on_guest_output(std::span<const std::span<uint8_t>>(&b, 1));
    }
    ASSERT_TRUE(session.status().has_value());
    EXPECT_EQ(session.status()->exit_code, 7);
    EXPECT_EQ(session.time_answers(), 1u);
    (*loop)->post([&] { (*loop)->request_stop(); });
    ASSERT_TRUE((*loop)->run());
}

}  // namespace
}  // namespace kvmsandbox
