// Segment loads (THREAT_MODEL.md): compartment code runs `mov %eax,%fs`.
// On Intel a null selector clears FS base (AMD CPUs without
// NullSelectorClearsBase keep the old base); a descriptor's selector, such
// as the user data segment 0x2b, gives its base, 0, on both. FS base is the
// host's TLS: the gate's landing and the signal entry find their state
// there, so without the repair the host's next TLS access faults with host
// rights and the process dies. With it the call ends with a report, the
// host's FS base is back and the process goes on.
#include <asm/prctl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <cstdint>
#include <ostream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/testing_switches.h"
#include "runtime/thread_identity.h"
#include "tests/signal_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::kHostSecret;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

constexpr uint32_t kNullSelector = 0;
constexpr uint32_t kUserData = 0x2b;  // __USER_DS: base 0 from the GDT

thread_local volatile int host_tls = 5;

// ---- compartment code ------------------------------------------------------

void LoadFs(uint32_t selector) {
  asm volatile("movl %0, %%fs" : : "r"(selector) : "memory");
}
void LoadGs(uint32_t selector) {
  asm volatile("movl %0, %%gs" : : "r"(selector) : "memory");
}

void NullThenReturn() { LoadFs(kNullSelector); }
void UserDataThenReturn() { LoadFs(kUserData); }
void NullThenSyscall() {
  LoadFs(kNullSelector);
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(SYS_getppid) : "rcx", "r11",
               "memory");
}
void NullThenTls() {
  LoadFs(kNullSelector);
  host_tls = 6;  // a TLS access of its own: faults inside
}
void NullThenSpin() {
  LoadFs(kNullSelector);
  for (;;) asm volatile("" ::: "memory");  // until the deadline
}
void (*volatile host_callback)() = nullptr;
void NullThenCallback() {
  LoadFs(kNullSelector);
  host_callback();
}
void GsThenReturn(uint32_t selector) { LoadGs(selector); }
// Both holes at once: FS base 0, then a jump to the signal entry's WRPKRU
// with the operands that give host rights (the repair must not trust it).
uint64_t entry_wrpkru;
void NullThenJumpIntoSignalEntry() {
  asm volatile(
      "xorl %%eax, %%eax\n"
      "movl %%eax, %%fs\n"
      "xorl %%ecx, %%ecx\n"
      "xorl %%edx, %%edx\n"
      "movl $17, %%edi\n"  // SIGCHLD
      "jmp *%0\n"
      :
      : "r"(entry_wrpkru)
      : "rax", "rcx", "rdx", "rdi", "memory");
}

int callback_runs = 0;
void CountRun() { ++callback_runs; }

// ---- the host ---------------------------------------------------------------

// The repair needs FSGSBASE and the 32-bit set_thread_area (IA32 emulation).
#define SKIP_WITHOUT_FS_REPAIR()                                     \
  do {                                                               \
    ASSERT_TRUE(Runtime::Init().ok());                               \
    if (!internal::FsRepairAvailable()) {                            \
      GTEST_SKIP() << "no FSGSBASE or no IA32 emulation: FS cannot " \
                      "be repaired here";                            \
    }                                                                \
  } while (0)

uint64_t FsBase() {
  uint64_t base = 0;
  syscall(SYS_arch_prctl, ARCH_GET_FS, &base);
  return base;
}

struct Attack {
  const char* name;
  void (*run)();
  bool timed;
};
const Attack kAttacks[] = {
    {"NullSelectorThenReturn", &NullThenReturn, false},
    {"UserDataSelectorThenReturn", &UserDataThenReturn, false},
    {"NullSelectorThenSyscall", &NullThenSyscall, false},
    {"NullSelectorThenTls", &NullThenTls, false},
    {"NullSelectorThenTimeout", &NullThenSpin, true},
    {"NullSelectorThenCallback", &NullThenCallback, false},
    {"NullSelectorThenJumpIntoSignalEntry", &NullThenJumpIntoSignalEntry,
     false},
};

void PrintTo(const Attack& a, std::ostream* os) { *os << a.name; }

class SegmentLoadTest : public ::testing::TestWithParam<Attack> {};

absl::Status RunAttack(const Attack& attack, std::unique_ptr<Compartment>& box) {
  box = MakeBox({.name = "segments",
                 .call_timeout = attack.timed ? absl::Milliseconds(50)
                                              : absl::InfiniteDuration()});
  entry_wrpkru = signal_attack::EntryWrpkru();
  auto cb = box->RegisterCallback(&CountRun);
  if (!cb.ok()) return cb.status();
  host_callback = cb->get();
  return box->Call(attack.run);
}

TEST_P(SegmentLoadTest, ContainedAndFsRestored) {
  SKIP_WITHOUT_FS_REPAIR();
  const uint64_t fs_before = FsBase();
  int secret = kHostSecret;
  callback_runs = 0;
  std::unique_ptr<Compartment> box;
  absl::Status s = RunAttack(GetParam(), box);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("'segments'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("changed FS or GS"));
  EXPECT_EQ(FsBase(), fs_before);
  EXPECT_EQ(callback_runs, 0);
  // Host TLS, errno and the host's memory are as they were.
  EXPECT_EQ(host_tls, 5);
  errno = 0;
  EXPECT_EQ(errno, 0);
  EXPECT_EQ(secret, kHostSecret);
  // The compartment works again after Reset, on this thread.
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(+[](int x) { return x + 1; }, 41)), 42);
}

INSTANTIATE_TEST_SUITE_P(
    Attacks, SegmentLoadTest, ::testing::ValuesIn(kAttacks),
    [](const ::testing::TestParamInfo<Attack>& param_info) {
      return std::string(param_info.param.name);
    });

// Without the repair the same attacks kill the process: the gate's landing
// (or the signal entry for the syscall) reads TLS through FS base 0, and so
// does the signal entry that follows.
TEST(SegmentLoadDeathTest, KillsTheHostWithoutRepair) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (void (*attack)() : {&NullThenReturn, &NullThenSyscall}) {
    EXPECT_EXIT(
        {
          internal::SkipFsRepairForTesting();
          auto box = MakeBox({.name = "segments"});
          box->Call(attack).IgnoreError();
          _exit(0);
        },
        ::testing::KilledBySignal(SIGSEGV), "");
  }
}

// GS: neither the x86-64 host ABI nor mpkbox reads it, so a compartment's
// GS load changes nothing the host uses; the call returns normally.
TEST(SegmentLoadTest, GsLoadLeavesTheHostWorking) {
  auto box = MakeBox({.name = "segments"});
  const uint64_t fs_before = FsBase();
  for (uint32_t selector : {kNullSelector, kUserData}) {
    EXPECT_TRUE(box->Call(&GsThenReturn, selector).ok());
    EXPECT_EQ(FsBase(), fs_before);
    EXPECT_EQ(host_tls, 5);
  }
}

// A signal of the host's that arrives while FS base is 0 ends the call and
// still reaches the host's handler, which runs with the host's TLS.
std::atomic<int> host_handler_tls{0};
std::atomic<bool> spinning{false};
void NullThenSignalSpin() {
  LoadFs(kNullSelector);
  spinning.store(true);  // key 0: under kReadWrite only
  for (;;) asm volatile("" ::: "memory");
}
TEST(SegmentLoadTest, HostSignalDuringTheAttackReachesTheHost) {
  SKIP_WITHOUT_FS_REPAIR();
  struct sigaction act {}, old{};
  act.sa_handler = [](int) { host_handler_tls.store(host_tls); };
  sigaction(SIGUSR1, &act, &old);
  absl::Status s;
  std::thread attacker([&] {
    auto box = MakeBox({.name = "segments",
                        .call_timeout = absl::Seconds(20),
                        .ambient = Ambient::kReadWrite});
    s = box->Call(&NullThenSignalSpin);
  });
  while (!spinning.load()) std::this_thread::yield();
  pthread_kill(attacker.native_handle(), SIGUSR1);
  attacker.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("changed FS or GS"));
  EXPECT_EQ(host_handler_tls.load(), 5);
  sigaction(SIGUSR1, &old, nullptr);
}

// Threads each have their own identity: attacks on two threads at once.
TEST(SegmentLoadTest, EachThreadIsRepairedAsItself) {
  SKIP_WITHOUT_FS_REPAIR();
  auto attack = [] {
    auto box = MakeBox({.name = "segments"});
    for (int i = 0; i < 20; ++i) {
      const uint64_t fs_before = FsBase();
      absl::Status s = box->Call(&NullThenSyscall);
      EXPECT_THAT(std::string(s.message()), HasSubstr("changed FS or GS"));
      EXPECT_EQ(FsBase(), fs_before);
      EXPECT_EQ(host_tls, 5);
      ASSERT_TRUE(box->Reset().ok());
    }
  };
  std::thread a(attack), b(attack);
  a.join();
  b.join();
}

}  // namespace
}  // namespace mpkbox
