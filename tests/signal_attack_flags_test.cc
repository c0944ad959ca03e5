// RFLAGS a compartment leaves for host code (signal attacks:
// signal_attack_util.h): DF, AC and TF set inside, on a return and on a
// fault, never reach host code or a host signal handler.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <ostream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/signal_attack_util.h"
#include "tests/test_util.h"

// RFLAGS are compartment state too. The kernel clears DF and TF (not AC) for
// a handler; the ABI wants DF clear in host code, and AC or TF set there
// turn the next misaligned access or the next instruction into a fault of
// host code, which kills the process.
asm(R"(
  .text
  .globl mpkbox_test_set_flags_and_return
  .type mpkbox_test_set_flags_and_return, @function
mpkbox_test_set_flags_and_return:
  pushq %rdi
  popfq
  movl $7, %eax
  ret
  .size mpkbox_test_set_flags_and_return, . - mpkbox_test_set_flags_and_return

  .globl mpkbox_test_set_flags_and_trap
  .type mpkbox_test_set_flags_and_trap, @function
mpkbox_test_set_flags_and_trap:
  pushq %rdi
  popfq
  ud2
  .size mpkbox_test_set_flags_and_trap, . - mpkbox_test_set_flags_and_trap

  // rdi = RFLAGS for the loop, rsi = iterations; restores the flags it found.
  .globl mpkbox_test_spin_with_flags
  .type mpkbox_test_spin_with_flags, @function
mpkbox_test_spin_with_flags:
  pushfq
  pushq %rdi
  popfq
1:
  decq %rsi
  jnz 1b
  popfq
  ret
  .size mpkbox_test_spin_with_flags, . - mpkbox_test_spin_with_flags
)");
extern "C" int mpkbox_test_set_flags_and_return(uint64_t rflags);
extern "C" void mpkbox_test_set_flags_and_trap(uint64_t rflags);
extern "C" void mpkbox_test_spin_with_flags(uint64_t rflags, uint64_t n);

namespace mpkbox::signal_attack {
namespace {

using ::mpkbox::testing::MakeBox;

constexpr uint64_t kTF = 1 << 8, kDF = 1 << 10, kAC = 1 << 18;

uint64_t ReadFlags() {
  uint64_t f;
  asm volatile("pushfq; popq %0" : "=r"(f));
  return f;
}

struct FlagsCase {
  const char* name;
  uint64_t flag;
  bool fault;  // ud2 after setting it, or return
};

void PrintTo(const FlagsCase& c, std::ostream* os) { *os << c.name; }

class LeftoverFlagsDeathTest : public SignalAttackTest,
                               public ::testing::WithParamInterface<FlagsCase> {
};

TEST_P(LeftoverFlagsDeathTest, HostNeverRunsWithTheCompartmentsFlags) {
  const FlagsCase& c = GetParam();
  auto box = MakeBox({.name = "flags"});
  ASSERT_NE(box, nullptr);
  EXPECT_EXIT(
      {
        absl::Status s;
        if (c.fault) {
          s = box->Call(&mpkbox_test_set_flags_and_trap, 0x202 | c.flag);
        } else {
          s = box->Call(&mpkbox_test_set_flags_and_return, 0x202 | c.flag)
                  .status();
        }
        const uint64_t host_flags = ReadFlags();  // before any other code
        if (host_flags & (kTF | kDF | kAC)) _exit(4);
        // A return with TF set single-steps into a SIGTRAP: a fault too.
        if (c.fault && s.code() != absl::StatusCode::kAborted) ExitAfter(1, s);
        if (!c.fault && c.flag != kTF && !s.ok()) ExitAfter(1, s);
        if (!UsableAfterReset(box.get())) ExitAfter(3, s);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit 4: host code runs with the compartment's flag; killed by "
         "SIGBUS (AC), SIGTRAP (TF) or SIGSEGV (DF): the process died of it";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LeftoverFlagsDeathTest,
    ::testing::Values(FlagsCase{"ReturnWithDF", kDF, false},
                      FlagsCase{"ReturnWithAC", kAC, false},
                      FlagsCase{"ReturnWithTF", kTF, false},
                      FlagsCase{"FaultWithDF", kDF, true},
                      FlagsCase{"FaultWithAC", kAC, true},
                      FlagsCase{"FaultWithTF", kTF, true}),
    [](const ::testing::TestParamInfo<FlagsCase>& param_info) {
      return std::string(param_info.param.name);
    });

std::atomic<uint64_t> flags_deliveries{0};
std::atomic<uint64_t> flags_seen_ac{0};
void FlagsHandler(int, siginfo_t*, void*) {
  if (ReadFlags() & kAC) flags_seen_ac.fetch_add(1);
  flags_deliveries.fetch_add(1);
}

TEST_F(SignalAttackDeathTest, HostHandlerRunsWithoutTheCompartmentsAC) {
  // The compartment keeps AC set only while it spins; host signals arrive.
  auto box = MakeBox({.name = "ac-spinner"});
  ASSERT_NE(box, nullptr);
  EXPECT_EXIT(
      {
        struct sigaction sa {};
        sa.sa_sigaction = FlagsHandler;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGUSR1, &sa, nullptr) != 0) _exit(10);
        const pid_t pid = getpid();
        const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
        std::atomic<bool> stop{false};
        std::thread sender([&] {
          while (!stop.load()) {
            const uint64_t before = flags_deliveries.load();
            syscall(SYS_tgkill, pid, tid, SIGUSR1);
            while (flags_deliveries.load() == before && !stop.load()) {
              sched_yield();
            }
          }
        });
        absl::Status s = absl::OkStatus();
        for (int i = 0; i < 20 && flags_deliveries.load() < 50 && s.ok(); ++i) {
          s = box->Call(&mpkbox_test_spin_with_flags, 0x202 | kAC,
                        uint64_t{20'000'000});
        }
        stop = true;
        sender.join();
        if (!s.ok()) ExitAfter(1, s);
        if (flags_deliveries.load() == 0) _exit(11);
        if (flags_seen_ac.load() != 0) _exit(4);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit 4: the host's handler ran with AC set; killed by SIGBUS: the "
         "signal entry or dispatcher tripped on it";
}

}  // namespace
}  // namespace mpkbox::signal_attack
