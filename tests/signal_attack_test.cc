// Attacks on the signal machinery (DESIGN.md 5c and 6, item 12), done from
// compartment code with real jumps, as an attacker would:
// - a jump to the signal entry with forged rdi/rsi/rdx and a fake ucontext;
// - a jump past its first check, straight to its WRPKRU, with EAX = 0, and
//   a jump to every byte of the entry and of the resume stub;
// - a replay of a real kernel frame left on the trusted signal stack, and
//   jumps that reuse what earlier frames left there;
// - rsp pointed into the trusted signal stack before a fault; a signal
//   handler of the compartment's own;
// - the resume stub restores every register, flag, vector and red-zone byte
//   of compartment code interrupted thousands of times by host signals;
// - RFLAGS (DF, AC, TF) a compartment leaves for host code;
// - jumps into the resume stub and into the gate's exception pads.
// Each attack must end as kAborted (a forgery where the design says so), the
// host's memory unchanged, the process alive and the compartment usable after
// Reset(). Attacks that could escape run in a child process.
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/gadget_guard.h"
#include "runtime/pku.h"
#include "runtime/runtime_state.h"
#include "tests/test_util.h"

extern "C" {
// The trampolines' symbols are hidden but linkable: the library is static.
extern char mpkbox_signal_begin[], mpkbox_signal_end[];
extern char mpkbox_signal_entry[], mpkbox_resume_stub[];
extern char mpkbox_gate_exception_pad[], mpkbox_callback_exception_pad[];
}

// Compartment code written the way an attacker would, in assembly (the
// forged jump itself and its payload are in test_util.h).
// - fill_and_trap puts its argument in every general register but rsp and
//   raises SIGILL: the kernel saves them in a frame on the signal stack.
// - unchecked_entry is the control: the signal entry without its checks.
// - storm runs a long loop whose state lives in every general register,
//   CF, ZF, xmm0-2, xmm15 and the red zone (see SignalStormTest).
asm(R"(
  .text
  .globl mpkbox_test_fill_and_trap
  .type mpkbox_test_fill_and_trap, @function
mpkbox_test_fill_and_trap:
  movq %rdi, %rax
  movq %rdi, %rbx
  movq %rdi, %rcx
  movq %rdi, %rdx
  movq %rdi, %rsi
  movq %rdi, %rbp
  movq %rdi, %r8
  movq %rdi, %r9
  movq %rdi, %r10
  movq %rdi, %r11
  movq %rdi, %r12
  movq %rdi, %r13
  movq %rdi, %r14
  movq %rdi, %r15
  ud2
  .size mpkbox_test_fill_and_trap, . - mpkbox_test_fill_and_trap

  .globl mpkbox_test_trap_with_rsp
  .type mpkbox_test_trap_with_rsp, @function
mpkbox_test_trap_with_rsp:
  movq %rdi, %rsp
  ud2
  .size mpkbox_test_trap_with_rsp, . - mpkbox_test_trap_with_rsp

  .globl mpkbox_test_unchecked_entry
  .type mpkbox_test_unchecked_entry, @function
mpkbox_test_unchecked_entry:
  movq %rdx, %r8
  xorl %eax, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  movq %r8, %rdx
  jmp mpkbox_signal_dispatch
  .size mpkbox_test_unchecked_entry, . - mpkbox_test_unchecked_entry

  .globl mpkbox_test_storm
  .type mpkbox_test_storm, @function
mpkbox_test_storm:
  pushq %rbx
  pushq %rbp
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rdi, %rcx
  movabsq $0x0123456789abcdef, %rax
  movabsq $0x1111111111111111, %rbx
  movabsq $0x2222222222222223, %rdx
  movabsq $0x3333333333333335, %rsi
  movabsq $0x4444444444444447, %rdi
  movabsq $0x555555555555555b, %rbp
  movabsq $0x666666666666666d, %r8
  movabsq $0x777777777777777f, %r9
  movabsq $0x8888888888888881, %r10
  movabsq $0x9999999999999993, %r11
  movabsq $0xaaaaaaaaaaaaaaa5, %r12
  movabsq $0xbbbbbbbbbbbbbbb7, %r13
  movabsq $0xccccccccccccccc9, %r14
  movabsq $0xdddddddddddddddb, %r15
  movq %rax, %xmm0
  movq %rbx, %xmm1
  pxor %xmm2, %xmm2
  movq %rdx, %xmm15
  movq %rsi, -8(%rsp)
  movq %rdi, -64(%rsp)
  movq %rbp, -128(%rsp)
  stc
  .globl mpkbox_test_storm_loop
mpkbox_test_storm_loop:
  // CF comes from the previous iteration's adc, across dec and jnz. Every
  // instruction until the next adc leaves the flags alone.
  adcq %r15, %rax
  leaq 0x1e3779b9(%rax,%rbx,2), %rbx
  bswapq %rbx
  leaq 3(%rbx,%rdx,4), %rdx
  notq %rdx
  leaq 7(%rdx,%rsi), %rsi
  xchgq %rsi, %rdi
  leaq (%rdi,%rbp,8), %rbp
  bswapq %rbp
  movq -8(%rsp), %r8
  leaq 0x1234(%r8,%rbp), %r8
  movq %r8, -8(%rsp)
  paddq %xmm1, %xmm0
  pshufd $0x4e, %xmm0, %xmm0
  movq %r8, %xmm2
  pxor %xmm2, %xmm1
  paddq %xmm0, %xmm15
  movq %xmm1, %r9
  leaq 1(%r9,%r8,2), %r9
  notq %r9
  leaq (%r10,%r9,4), %r10
  movq -64(%rsp), %r11
  leaq 5(%r11,%r10), %r11
  bswapq %r11
  movq %r11, -64(%rsp)
  leaq (%r12,%r11,8), %r12
  leaq 9(%r13,%r12), %r13
  movq -128(%rsp), %r14
  xchgq %r13, %r14
  leaq 11(%r14,%r13,2), %r14
  movq %r14, -128(%rsp)
  notq %r14
  movq %xmm15, %r15
  leaq (%r15,%r14,4), %r15
  decq %rcx
  jnz mpkbox_test_storm_loop
  .globl mpkbox_test_storm_loop_end
mpkbox_test_storm_loop_end:
  adcq $0, %rax
  xorq %rbx, %rax
  addq %rdx, %rax
  xorq %rsi, %rax
  addq %rdi, %rax
  xorq %rbp, %rax
  addq %r8, %rax
  xorq %r9, %rax
  addq %r10, %rax
  xorq %r11, %rax
  addq %r12, %rax
  xorq %r13, %rax
  addq %r14, %rax
  xorq %r15, %rax
  movq %xmm0, %rdx
  addq %rdx, %rax
  pextrq $1, %xmm0, %rdx
  xorq %rdx, %rax
  movq %xmm1, %rdx
  addq %rdx, %rax
  pextrq $1, %xmm1, %rdx
  xorq %rdx, %rax
  pextrq $1, %xmm15, %rdx
  addq %rdx, %rax
  xorq -8(%rsp), %rax
  addq -64(%rsp), %rax
  xorq -128(%rsp), %rax
  // The PKRU the loop ends with: 0 for the host, the compartment's inside.
  movq %rax, %r8
  xorl %ecx, %ecx
  rdpkru
  xorq %r8, %rax
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbp
  popq %rbx
  ret
  .size mpkbox_test_storm, . - mpkbox_test_storm
)");

extern "C" {
void mpkbox_test_fill_and_trap(uint64_t value);
void mpkbox_test_unchecked_entry();
void mpkbox_test_trap_with_rsp(uint64_t rsp);
uint64_t mpkbox_test_storm(uint64_t iterations);
extern char mpkbox_test_storm_loop[], mpkbox_test_storm_loop_end[];
}

namespace mpkbox {
namespace {

using ::mpkbox::testing::AttackFromInside;
using ::mpkbox::testing::attack_regs;
using ::mpkbox::testing::attack_stack_top;
using ::mpkbox::testing::AttackRegs;
using ::mpkbox::testing::ContainedAsForgery;
using ::mpkbox::testing::FindBytes;
using ::mpkbox::testing::kEscaped;
using ::mpkbox::testing::kFakeFrame;
using ::mpkbox::testing::kFakeInfo;
using ::mpkbox::testing::kHostSecret;
using ::mpkbox::testing::kOwnStack;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::PayloadAddress;
using ::mpkbox::testing::PayloadRegs;
using ::mpkbox::testing::UnderEmulation;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

constexpr int kHandlerSubverted = 78;  // a host handler ran on a forged frame
// The dispatcher's mark on a frame it has dispatched (runtime/signals.cc).
constexpr uint64_t kConsumedFrame = 0x6d706b626f782121;

// The WRPKRU of the signal entry: the first one after mpkbox_signal_begin.
uintptr_t EntryWrpkru() {
  std::vector<uintptr_t> sites =
      FindBytes(mpkbox_signal_begin, mpkbox_signal_end, {0x0f, 0x01, 0xef});
  return sites.empty() ? 0 : sites[0];
}

// For a child process: says what the call returned, then exits with `code`.
[[noreturn]] void ExitAfter(int code, const absl::Status& s) {
  fprintf(stderr, "status: %s; host secret %d\n", s.ToString().c_str(),
          mpkbox_test_host_secret);
  fflush(stderr);
  _exit(code);
}

// After Reset the compartment runs code again and the host has its rights.
bool UsableAfterReset(Compartment* box) {
  if (!box->Reset().ok()) return false;
  absl::StatusOr<Tainted<int>> r = box->Call(+[] { return 41 + 1; });
  return r.ok() && r->UnverifiedValue("test") == 42 &&
         internal::ReadPkru() == 0;
}

struct SignalStack {
  uintptr_t lo = 0, hi = 0;
};
SignalStack ThisThreadSignalStack() {
  internal::ThreadBlock* tb = internal::CurrentThreadBlock();
  if (tb == nullptr) return {};
  return {tb->sigstack_lo, tb->sigstack_hi};
}

// Enters a compartment once so that this thread has its trusted signal stack.
void EnterOnce() {
  auto box = MakeBox({.name = "warm-up"});
  ASSERT_NE(box, nullptr);
  EXPECT_EQ(Value(box->Call(+[] { return 1; })), 1);
  ASSERT_NE(ThisThreadSignalStack().lo, 0u);
}

// ---------------------------------------------------------------------------
// The host's SIGUSR1 handler for the replay tests: records the frame the
// kernel built, and, once the attack is armed, reports a forged call.
std::atomic<int> usr1_calls{0};
std::atomic<uintptr_t> usr1_uc{0};
std::atomic<uintptr_t> usr1_info{0};
std::atomic<uintptr_t> usr1_sp{0};
std::atomic<bool> usr1_armed{false};

void RecordingHandler(int, siginfo_t* info, void* uc) {
  volatile char here = 0;
  usr1_calls.fetch_add(1);
  if (usr1_armed.load()) _exit(kHandlerSubverted);
  usr1_uc = reinterpret_cast<uintptr_t>(uc);
  usr1_info = reinterpret_cast<uintptr_t>(info);
  usr1_sp = reinterpret_cast<uintptr_t>(&here);
}

class SignalAttackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Runtime::Init().ok());
    EnterOnce();
    mpkbox_test_host_secret = kHostSecret;
  }
};
using SignalAttackDeathTest = SignalAttackTest;

// Installs RecordingHandler (through mpkbox's sigaction: it runs behind the
// signal entry) and raises SIGUSR1 on this thread from host code, so the
// kernel writes a frame on the trusted signal stack and the dispatcher
// consumes it.
void RaiseRecordedSigusr1() {
  struct sigaction sa {};
  sa.sa_sigaction = RecordingHandler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  usr1_calls = 0;
  usr1_armed = false;
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
  ASSERT_EQ(usr1_calls.load(), 1);
}

// ---------------------------------------------------------------------------
// 1. The entry's first instruction, with forged registers.

TEST_F(SignalAttackTest, JumpToEntryWithForgedRegistersIsContained) {
  auto box = MakeBox({.name = "entry-jumper"});
  ASSERT_NE(box, nullptr);
  mpkbox_test_jump_target = reinterpret_cast<uint64_t>(mpkbox_signal_entry);
  const std::vector<int> signals = {SIGSEGV, SIGCHLD, SIGUSR1};
  for (int sig : signals) {
    AttackRegs r = PayloadRegs();
    r.rdi = static_cast<uint64_t>(sig);
    r.rsi = kFakeInfo;
    r.rdx = kFakeFrame;
    r.r8 = kFakeFrame;
    attack_regs = r;
    absl::Status s = box->Call(&AttackFromInside);
    EXPECT_TRUE(ContainedAsForgery(box.get(), s)) << "signal " << sig << ": "
                                                  << s;
    ASSERT_NE(box->last_fault(), nullptr);
    EXPECT_EQ(box->last_fault()->signal, SIGILL);  // the entry's trap
    // The trap ran with the compartment's own rights.
    EXPECT_THAT(s.message(),
                HasSubstr(absl::StrFormat("PKRU 0x%08x", box->pkru())));
    EXPECT_TRUE(UsableAfterReset(box.get()));
  }
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

// ---------------------------------------------------------------------------
// 2. Straight to the entry's WRPKRU with EAX = 0: the checks after it must
// catch an rsp or a ucontext outside the trusted signal stack.

TEST_F(SignalAttackTest, EntryWrpkruIsTheFirstSiteInsideTheEntry) {
  const uintptr_t site = EntryWrpkru();
  EXPECT_GT(site, reinterpret_cast<uintptr_t>(mpkbox_signal_entry));
  EXPECT_LT(site, reinterpret_cast<uintptr_t>(mpkbox_resume_stub));
  // It is the WRPKRU of WRPKRU_HOST: xor eax, xor ecx, xor edx before it.
  EXPECT_EQ(memcmp(reinterpret_cast<const char*>(site) - 6,
                   "\x31\xc0\x31\xc9\x31\xd2", 6),
            0);
}

// The attack of the tests below against a signal entry without its range
// checks: the payload runs with host rights. This shows the registers and
// the fake frame are enough to escape if a check is missing.
TEST_F(SignalAttackDeathTest, ControlEntryWithoutChecksEscapes) {
  auto box = MakeBox({.name = "control"});
  ASSERT_NE(box, nullptr);
  mpkbox_test_jump_target =
      reinterpret_cast<uint64_t>(&mpkbox_test_unchecked_entry);
  AttackRegs r = PayloadRegs();
  r.rdi = SIGCHLD;
  r.rsi = kFakeInfo;
  r.rdx = kFakeFrame;
  attack_regs = r;
  EXPECT_EXIT(
      {
        // The unchecked entry's WRPKRU is a stray one: without this the
        // gadget guards would stop the attack before the missing checks do.
        internal::DisableGadgetGuardsForTesting();
        static_cast<void>(box->Call(&AttackFromInside));
        _exit(0);
      },
      ::testing::ExitedWithCode(kEscaped), "");
}

struct WrpkruCase {
  const char* name;
  bool rsp_on_signal_stack;
  bool frame_on_signal_stack;
};

void PrintTo(const WrpkruCase& c, std::ostream* os) { *os << c.name; }

class EntryWrpkruDeathTest : public SignalAttackTest,
                             public ::testing::WithParamInterface<WrpkruCase> {
};

TEST_P(EntryWrpkruDeathTest, JumpToWrpkruWithForgedFrameIsContained) {
  const WrpkruCase& c = GetParam();
  auto box = MakeBox({.name = "wrpkru-jumper"});
  ASSERT_NE(box, nullptr);
  const SignalStack ss = ThisThreadSignalStack();
  mpkbox_test_jump_target = EntryWrpkru();
  ASSERT_NE(mpkbox_test_jump_target, 0u);
  AttackRegs r = PayloadRegs();
  r.rax = r.rcx = r.rdx = 0;  // the WRPKRU's legitimate operands: host rights
  r.rdi = SIGCHLD;
  r.rsi = kFakeInfo;
  // The entry copied rdx to r8 before its first check: the ucontext the
  // code after the WRPKRU uses is r8.
  const uint64_t middle = ((ss.lo + ss.hi) / 2) & ~uint64_t{15};
  r.r8 = c.frame_on_signal_stack ? middle : kFakeFrame;
  r.rsp = c.rsp_on_signal_stack ? middle - 8 : kOwnStack;
  attack_regs = r;
  EXPECT_EXIT(
      {
        absl::Status s = box->Call(&AttackFromInside);
        if (!ContainedAsForgery(box.get(), s)) ExitAfter(1, s);
        if (box->last_fault()->signal != SIGILL) ExitAfter(2, s);
        if (!UsableAfterReset(box.get())) _exit(3);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit 77: the payload ran with host rights";
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
  EXPECT_TRUE(UsableAfterReset(box.get()));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, EntryWrpkruDeathTest,
    ::testing::Values(WrpkruCase{"RspAndFrameOnCompartmentStack", false, false},
                      WrpkruCase{"FrameOnCompartmentStack", true, false},
                      WrpkruCase{"RspOnCompartmentStack", false, true}),
    [](const ::testing::TestParamInfo<WrpkruCase>& info) {
      return std::string(info.param.name);
    });

// "Or any later instruction of it" (DESIGN.md 6, item 12): a jump to every
// byte of the entry and of the resume stub, instruction boundaries or not,
// with EAX = ECX = EDX = 0 (a WRPKRU reached opens every key), rsp and the
// ucontext on the compartment's stack, the payload everywhere else.
TEST_F(SignalAttackDeathTest, JumpToEveryByteOfEntryAndStubIsContained) {
  // One death test per byte, so that one failure does not hide the others.
  // The word at rsp holds plain flags: a jump to the stub's popf loads it,
  // and flags are the subject of LeftoverFlagsDeathTest (the payload's
  // address there would set TF, DF or AC depending on where the loader put
  // it).
  auto box = MakeBox({.name = "sweeper", .call_timeout = absl::Seconds(1)});
  ASSERT_NE(box, nullptr);
  AttackRegs r = PayloadRegs();
  r.rax = r.rcx = r.rdx = 0;
  r.rdi = SIGCHLD;
  r.rsi = kFakeInfo;
  r.r8 = kFakeFrame;
  attack_regs = r;
  attack_stack_top = 0x202;
  std::string emulation_kills;
  for (const char* p = mpkbox_signal_entry; p < mpkbox_signal_end; ++p) {
    mpkbox_test_jump_target = reinterpret_cast<uint64_t>(p);
    // QEMU 7.2 kills the task at an `lret imm16` (0xca) on a 64-bit stack
    // where hardware raises #GP: in the emulated guest only, a SIGKILL at a
    // byte whose next 8 hold 0xca is that bug, not an escape.
    auto contained = [&](int status) {
      if (UnderEmulation() && WIFSIGNALED(status) &&
          WTERMSIG(status) == SIGKILL && memchr(p, 0xca, 8) != nullptr) {
        absl::StrAppendFormat(&emulation_kills, " +%d",
                              p - mpkbox_signal_entry);
        return true;
      }
      return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    };
    EXPECT_EXIT(
        {
          alarm(10);
          absl::Status s = box->Call(&AttackFromInside);
          if (s.code() != absl::StatusCode::kAborted &&
              s.code() != absl::StatusCode::kDeadlineExceeded &&
              s.code() != absl::StatusCode::kPermissionDenied) {  // restorer
            ExitAfter(1, s);
          }
          if (mpkbox_test_host_secret != kHostSecret) ExitAfter(2, s);
          if (!UsableAfterReset(box.get())) ExitAfter(3, s);
          _exit(0);
        },
        contained, "")
        << (p < mpkbox_resume_stub
                ? absl::StrCat("mpkbox_signal_entry+", p - mpkbox_signal_entry)
                : absl::StrCat("mpkbox_resume_stub (or after)+",
                               p - mpkbox_resume_stub))
        << " (exit 1: not a contained fault; exit 77: the payload ran with "
           "host rights)";
  }
  attack_stack_top = 0;
  if (!emulation_kills.empty()) {
    std::printf("under emulation, QEMU's lret imm16 bug killed the jumps to "
                "mpkbox_signal_entry%s: not counted\n",
                emulation_kills.c_str());
  }
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

// ---------------------------------------------------------------------------
// 3. Replays: a real kernel frame the dispatcher already consumed, and what
// such frames leave on the trusted signal stack.

TEST_F(SignalAttackDeathTest, ReplayOfConsumedKernelFrameIsContained) {
  RaiseRecordedSigusr1();
  const SignalStack ss = ThisThreadSignalStack();
  const uintptr_t uc = usr1_uc;
  ASSERT_GE(uc, ss.lo);
  ASSERT_LT(uc, ss.hi);
  ASSERT_GE(usr1_sp.load(), ss.lo);  // the handler ran on the signal stack
  ASSERT_LT(usr1_sp.load(), uc);
  ASSERT_EQ(*reinterpret_cast<const uint64_t*>(uc + 8), kConsumedFrame);

  auto box = MakeBox({.name = "replayer"});
  ASSERT_NE(box, nullptr);
  mpkbox_test_jump_target = EntryWrpkru();
  AttackRegs r = PayloadRegs();
  r.rax = r.rcx = 0;
  r.rdi = SIGUSR1;
  r.rsi = usr1_info;
  r.rdx = 0;  // WRPKRU needs EDX = 0: the entry takes the ucontext from r8
  r.r8 = uc;
  r.rsp = uc - 8;  // where the kernel had rsp: [rsp] is the restorer
  attack_regs = r;
  EXPECT_EXIT(
      {
        usr1_armed = true;
        absl::Status s = box->Call(&AttackFromInside);
        usr1_armed = false;
        if (!ContainedAsForgery(box.get(), s)) ExitAfter(1, s);
        if (usr1_calls.load() != 1) _exit(2);
        if (!UsableAfterReset(box.get())) _exit(3);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit 77: the payload ran with host rights; exit 78: the host's "
         "SIGUSR1 handler ran again";
  EXPECT_EQ(usr1_calls.load(), 1);
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

// The same frame, but the ucontext (r8) a few words off it: the dispatcher's
// mark is at one address only, and the kernel's restorer still sits at rsp.
TEST_F(SignalAttackDeathTest, ShiftedReplayOfKernelFrameIsContained) {
  RaiseRecordedSigusr1();
  const SignalStack ss = ThisThreadSignalStack();
  const uintptr_t uc = usr1_uc;
  ASSERT_GE(uc, ss.lo);
  ASSERT_LT(uc + 1024, ss.hi);
  // A start above rsp (so the dispatcher's own frames do not overwrite it)
  // where no mark is, and whose fpregs word is null (FramePkru reads 0).
  uintptr_t shifted = 0;
  for (uintptr_t p = uc + 8; p + 512 < ss.hi; p += 8) {
    if (*reinterpret_cast<const uint64_t*>(p + 8) != kConsumedFrame &&
        *reinterpret_cast<const uint64_t*>(p + 224) == 0) {
      shifted = p;
      break;
    }
  }
  ASSERT_NE(shifted, 0u);

  auto box = MakeBox({.name = "shifted-replayer"});
  ASSERT_NE(box, nullptr);
  mpkbox_test_jump_target = EntryWrpkru();
  AttackRegs r = PayloadRegs();
  r.rax = r.rcx = 0;
  r.rdi = SIGUSR1;
  r.rsi = kFakeInfo;  // siginfo in compartment memory
  r.rdx = 0;  // WRPKRU needs EDX = 0: the entry takes the ucontext from r8
  r.r8 = shifted;
  r.rsp = uc - 8;
  attack_regs = r;
  EXPECT_EXIT(
      {
        usr1_armed = true;
        absl::Status s = box->Call(&AttackFromInside);
        usr1_armed = false;
        if (!ContainedAsForgery(box.get(), s)) ExitAfter(1, s);
        if (!UsableAfterReset(box.get())) _exit(3);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit 77: the payload ran with host rights; exit 78: the host's "
         "SIGUSR1 handler ran on a forged frame (ucontext "
      << std::hex << shifted << ", " << std::dec << (shifted - uc)
      << " bytes above the consumed frame)";
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

// The kernel saves the compartment's registers in every frame it writes on
// the signal stack, and they stay there after the dispatcher is done. A
// forged entry whose rsp points at one of them must not return there.
TEST_F(SignalAttackDeathTest, StaleCompartmentRegistersAreNoReturnAddress) {
  auto box = MakeBox({.name = "stale-frame"});
  ASSERT_NE(box, nullptr);
  EXPECT_EXIT(
      {
        // Call 1: every register holds the payload when the kernel saves
        // them (SIGILL, contained as an ordinary fault).
        absl::Status s =
            box->Call(&mpkbox_test_fill_and_trap, PayloadAddress());
        if (s.code() != absl::StatusCode::kAborted) _exit(10);
        if (!box->Reset().ok()) _exit(11);
        // The attacker knows the layout; the test reads it for brevity
        // (compartment code could ask sigaltstack(2), or count from the
        // top: the kernel puts the first frame at a fixed place).
        const SignalStack ss = ThisThreadSignalStack();
        uintptr_t slot = 0;
        for (uintptr_t p = ss.lo; p + 64 <= ss.hi && slot == 0; p += 8) {
          bool all = true;
          for (int i = 0; i < 8 && all; ++i) {
            all = reinterpret_cast<const uint64_t*>(p)[i] == PayloadAddress();
          }
          if (all) slot = p;  // gregs[REG_R8] of the SIGILL frame
        }
        if (slot == 0) _exit(12);
        if (slot % 16 != 8) slot += 8;  // rsp as at a function's entry
        uintptr_t uc = 0;
        for (uintptr_t p = slot + 64; p + 512 < ss.hi; p += 8) {
          if (*reinterpret_cast<const uint64_t*>(p + 8) != kConsumedFrame &&
              *reinterpret_cast<const uint64_t*>(p + 224) == 0) {
            uc = p;
            break;
          }
        }
        if (uc == 0) _exit(13);
        // Call 2: the entry's WRPKRU with EAX = 0, rsp on the saved r8.
        mpkbox_test_jump_target = EntryWrpkru();
        AttackRegs r = PayloadRegs();
        r.rax = r.rcx = 0;
        r.rdi = SIGCHLD;  // the host ignores it: the dispatcher just returns
        r.rsi = kFakeInfo;
        r.rdx = 0;  // WRPKRU needs EDX = 0: the entry takes the ucontext from r8
  r.r8 = uc;
        r.rsp = slot;
        attack_regs = r;
        s = box->Call(&AttackFromInside);
        if (!ContainedAsForgery(box.get(), s)) ExitAfter(1, s);
        if (!UsableAfterReset(box.get())) _exit(3);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit 77: the payload ran with host rights";
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

// The kernel decides from rsp alone whether a thread is already on its
// signal stack. Compartment code that points rsp into the trusted signal
// stack and faults makes the kernel write the frame (and run the
// dispatcher) at the place it chose, however little room is left below.
class RspOnSignalStackDeathTest : public SignalAttackTest,
                                  public ::testing::WithParamInterface<int> {};

TEST_P(RspOnSignalStackDeathTest, FaultWithRspOnSignalStackIsContained) {
  auto box = MakeBox({.name = "rsp-on-sigstack"});
  ASSERT_NE(box, nullptr);
  const SignalStack ss = ThisThreadSignalStack();
  const uint64_t rsp = ss.lo + GetParam();
  EXPECT_EXIT(
      {
        absl::Status s = box->Call(&mpkbox_test_trap_with_rsp, rsp);
        if (s.code() != absl::StatusCode::kAborted) ExitAfter(1, s);
        if (mpkbox_test_host_secret != kHostSecret) ExitAfter(2, s);
        if (!UsableAfterReset(box.get())) ExitAfter(3, s);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "rsp = signal stack bottom + " << GetParam();
}

// Above the bottom of the signal stack: no room for the kernel's frame (about
// 3.3 KB with AVX-512 state), room for the frame but not the dispatcher, room
// for both.
INSTANTIATE_TEST_SUITE_P(Offsets, RspOnSignalStackDeathTest,
                         ::testing::Values(256, 4096, 16384));

// The entry's first check trusts PKRU == init_pkru to mean "entered by the
// kernel". A handler that compartment code installs itself is entered by the
// kernel too, with that PKRU: key 0 writable, and the entry's check passed
// if it jumps there. Compartments must not get a handler of their own
// (DESIGN.md 5c: syscall dispatch blocks rt_sigaction).
asm(R"(
  .text
  .globl mpkbox_test_own_handler
  .type mpkbox_test_own_handler, @function
mpkbox_test_own_handler:
  jmp mpkbox_test_payload
  .size mpkbox_test_own_handler, . - mpkbox_test_own_handler

  // rdi = struct kernel_sigaction*: rt_sigaction(SIGUSR2, rdi, 0, 8), then
  // tgkill(getpid(), gettid(), SIGUSR2). Returns the first failing result,
  // or 0. Raw syscalls: libc's wrappers would write errno (key 0).
  .globl mpkbox_test_install_and_raise
  .type mpkbox_test_install_and_raise, @function
mpkbox_test_install_and_raise:
  movq %rdi, %rsi
  movl $12, %edi
  xorl %edx, %edx
  movl $8, %r10d
  movl $13, %eax
  syscall
  testq %rax, %rax
  jnz 1f
  movl $39, %eax
  syscall
  movq %rax, %r8
  movl $186, %eax
  syscall
  movq %rax, %rsi
  movq %r8, %rdi
  movl $12, %edx
  movl $234, %eax
  syscall
1:
  ret
  .size mpkbox_test_install_and_raise, . - mpkbox_test_install_and_raise
)");
extern "C" void mpkbox_test_own_handler();
extern "C" int64_t mpkbox_test_install_and_raise(const void* kernel_act);

struct KernelSigaction {
  uint64_t handler, flags, restorer, mask;
};
constexpr uint64_t kSaRestorer = 0x04000000;

TEST_F(SignalAttackDeathTest, CompartmentCannotRunAHandlerOfItsOwn) {
  auto box = MakeBox({.name = "own-handler"});
  ASSERT_NE(box, nullptr);
  EXPECT_EXIT(
      {
        absl::StatusOr<Tainted<int64_t>> r = box->Call(+[] {
          KernelSigaction act{
              reinterpret_cast<uint64_t>(&mpkbox_test_own_handler),
              SA_SIGINFO | SA_ONSTACK | kSaRestorer,
              reinterpret_cast<uint64_t>(&mpkbox_test_own_handler), 0};
          return mpkbox_test_install_and_raise(&act);
        });
        // Refused (an error result or a failed call) is fine; the handler
        // running is not.
        if (mpkbox_test_host_secret != kHostSecret) _exit(2);
        if (!box->Reset().ok() || !UsableAfterReset(box.get())) _exit(3);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit 77 or 2: the compartment's own handler wrote host memory";
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

// ---------------------------------------------------------------------------
// 4. The resume stub under a storm of host signals.

// What the host handler does besides counting. The controls change one piece
// of the interrupted compartment state, once: the checksum must see it.
enum class Corrupt { kNone, kCarryFlag, kRbx, kRdx, kXmm1, kRedZone };

std::atomic<uint64_t> storm_deliveries{0};
std::atomic<uint64_t> storm_in_loop{0};
std::atomic<uint64_t> storm_bad_pkru{0};
std::atomic<uint32_t> storm_last_bad_pkru{0};
std::atomic<uint64_t>* storm_heap = nullptr;  // host heap, written by handler
std::atomic<Corrupt> storm_corrupt{Corrupt::kNone};
std::atomic<bool> storm_corrupted{false};

// The interrupted instruction is in the loop, where every piece of state the
// controls change is live.
bool InStormLoop(uintptr_t rip) {
  return rip >= reinterpret_cast<uintptr_t>(mpkbox_test_storm_loop) &&
         rip <= reinterpret_cast<uintptr_t>(mpkbox_test_storm_loop_end);
}

void CorruptOnce(ucontext_t* uc) {
  greg_t* g = uc->uc_mcontext.gregs;
  switch (storm_corrupt.load()) {
    case Corrupt::kNone:
      return;
    case Corrupt::kCarryFlag:
      g[REG_EFL] ^= 1;
      break;
    case Corrupt::kRbx:
      g[REG_RBX] ^= 1 << 12;
      break;
    case Corrupt::kRdx:
      g[REG_RDX] ^= 1 << 12;
      break;
    case Corrupt::kXmm1:
      uc->uc_mcontext.fpregs->_xmm[1].element[2] ^= 1 << 12;
      break;
    case Corrupt::kRedZone: {
      // All three slots: each is dead for a few instructions of the loop.
      auto* sp = reinterpret_cast<uint64_t*>(g[REG_RSP]);
      sp[-1] ^= 1 << 12;
      sp[-8] ^= 1 << 12;
      sp[-16] ^= 1 << 12;
      break;
    }
  }
  storm_corrupted = true;
}

void StormHandler(int, siginfo_t*, void* raw) {
  const uint32_t pkru = internal::ReadPkru();
  if (pkru != 0) {
    storm_bad_pkru.fetch_add(1);
    storm_last_bad_pkru = pkru;
  }
  storm_deliveries.fetch_add(1);
  auto* uc = static_cast<ucontext_t*>(raw);
  const uintptr_t rip = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  if (InStormLoop(rip)) {
    storm_in_loop.fetch_add(1);
    if (!storm_corrupted.load()) CorruptOnce(uc);
  }
  storm_heap->fetch_add(1);
}

struct StormResult {
  uint64_t expected = 0;
  int rounds = 0;
  int wrong_rounds = 0;
  uint64_t sent = 0;
};

// Runs rounds of `iterations` loop iterations in `box` while another thread
// sends this thread SIGUSR1, until `done_when()` or 8 seconds passed. The
// sender waits for each signal to be delivered before the next (a pending
// SIGUSR1 absorbs the ones sent after it), yielding in case both threads
// share a CPU, then waits a varying few microseconds.
template <typename Done>
StormResult RunStorm(Compartment* box, uint64_t iterations, Done done_when) {
  StormResult result;
  // The truth, with no gate and no signal (the loop ends by XORing PKRU in:
  // 0 here, the compartment's inside).
  result.expected = mpkbox_test_storm(iterations) ^ box->pkru();
  storm_deliveries = storm_in_loop = storm_bad_pkru = 0;
  storm_corrupted = false;
  struct sigaction sa {}, old{};
  sa.sa_sigaction = StormHandler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  EXPECT_EQ(sigaction(SIGUSR1, &sa, &old), 0);

  const pid_t pid = getpid();
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sent{0};
  std::thread sender([&] {
    uint64_t delay = 1;
    while (!stop.load()) {
      const uint64_t before = storm_deliveries.load();
      syscall(SYS_tgkill, pid, tid, SIGUSR1);
      sent.fetch_add(1);
      while (storm_deliveries.load() == before && !stop.load()) sched_yield();
      delay = delay * 7 % 23;  // 1..22 us
      const auto until = std::chrono::steady_clock::now() +
                         std::chrono::microseconds(delay);
      while (std::chrono::steady_clock::now() < until) {
      }
    }
  });
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done_when() && std::chrono::steady_clock::now() < give_up) {
    absl::StatusOr<Tainted<uint64_t>> got = box->Call(&mpkbox_test_storm, iterations);
    ++result.rounds;
    if (!got.ok() || got->UnverifiedValue("test") != result.expected) {
      ++result.wrong_rounds;
    }
  }
  stop = true;
  sender.join();
  result.sent = sent.load();
  EXPECT_EQ(sigaction(SIGUSR1, &old, nullptr), 0);
  return result;
}

TEST_F(SignalAttackTest, ResumeStubRestoresEverythingUnderASignalStorm) {
  constexpr uint64_t kWantedInLoop = 500;  // reachable under a loaded ctest -j2
  auto box = MakeBox({.name = "storm"});
  ASSERT_NE(box, nullptr);
  auto heap = std::make_unique<std::atomic<uint64_t>>(0);
  storm_heap = heap.get();
  storm_corrupt = Corrupt::kNone;
  const StormResult r = RunStorm(box.get(), 3'000'000, [] {
    return storm_in_loop.load() >= kWantedInLoop;
  });
  EXPECT_EQ(r.wrong_rounds, 0) << "of " << r.rounds << " rounds";
  EXPECT_GE(storm_in_loop.load(), kWantedInLoop)
      << storm_deliveries.load() << " deliveries of " << r.sent << " sent in "
      << r.rounds << " rounds";
  EXPECT_EQ(storm_bad_pkru.load(), 0u)
      << "handler ran with PKRU " << std::hex << storm_last_bad_pkru.load();
  EXPECT_EQ(heap->load(), storm_deliveries.load());
  EXPECT_EQ(internal::ReadPkru(), 0u);
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
  storm_heap = nullptr;
}

// The checksum catches one change to any kind of state the stub restores:
// so the test above would catch a stub that lost it.
class StormControlTest : public SignalAttackTest,
                         public ::testing::WithParamInterface<Corrupt> {};

TEST_P(StormControlTest, OneCorruptedResumeChangesTheChecksum) {
  auto box = MakeBox({.name = "storm-control"});
  ASSERT_NE(box, nullptr);
  auto heap = std::make_unique<std::atomic<uint64_t>>(0);
  storm_heap = heap.get();
  storm_corrupt = GetParam();
  const StormResult r =
      RunStorm(box.get(), 1'000'000, [] { return storm_corrupted.load(); });
  storm_corrupt = Corrupt::kNone;
  ASSERT_TRUE(storm_corrupted.load()) << "no signal reached the loop";
  EXPECT_EQ(r.wrong_rounds, 1) << "of " << r.rounds << " rounds";
  storm_heap = nullptr;
}

std::string CorruptName(const ::testing::TestParamInfo<Corrupt>& info) {
  static const char* const kNames[] = {"None", "CarryFlag", "Rbx",
                                       "Rdx",  "Xmm1",      "RedZone"};
  return kNames[static_cast<int>(info.param)];
}

INSTANTIATE_TEST_SUITE_P(EachKindOfState, StormControlTest,
                         ::testing::Values(Corrupt::kCarryFlag, Corrupt::kRbx,
                                           Corrupt::kRdx, Corrupt::kXmm1,
                                           Corrupt::kRedZone),
                         CorruptName);

// ---------------------------------------------------------------------------
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
    [](const ::testing::TestParamInfo<FlagsCase>& info) {
      return std::string(info.param.name);
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

// ---------------------------------------------------------------------------
// 5. Into the resume stub: its first reads are of trusted memory.

TEST_F(SignalAttackTest, JumpToResumeStubFaultsOnTrustedKey) {
  auto box = MakeBox({.name = "stub-jumper"});
  ASSERT_NE(box, nullptr);
  mpkbox_test_jump_target = reinterpret_cast<uint64_t>(mpkbox_resume_stub);
  attack_regs = PayloadRegs();
  absl::Status s = box->Call(&AttackFromInside);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  ASSERT_NE(box->last_fault(), nullptr);
  EXPECT_EQ(box->last_fault()->signal, SIGSEGV);
  EXPECT_EQ(box->last_fault()->code, SEGV_PKUERR);
  EXPECT_EQ(box->last_fault()->pkey, internal::Keys().trusted);
  EXPECT_GE(box->last_fault()->ip,
            reinterpret_cast<uintptr_t>(mpkbox_resume_stub));
  EXPECT_LT(box->last_fault()->ip,
            reinterpret_cast<uintptr_t>(mpkbox_signal_end));
  EXPECT_THAT(s.message(), HasSubstr("trusted"));
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
  EXPECT_TRUE(UsableAfterReset(box.get()));
}

// ---------------------------------------------------------------------------
// 6. Into the gate's exception pads.

TEST_F(SignalAttackTest, JumpToCallbackExceptionPadIsContained) {
  auto box = MakeBox({.name = "pad-jumper"});
  ASSERT_NE(box, nullptr);
  mpkbox_test_jump_target =
      reinterpret_cast<uint64_t>(mpkbox_callback_exception_pad);
  attack_regs = PayloadRegs();
  absl::Status s = box->Call(&AttackFromInside);
  EXPECT_TRUE(ContainedAsForgery(box.get(), s)) << s;
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
  EXPECT_TRUE(UsableAfterReset(box.get()));
}

TEST_F(SignalAttackTest, JumpToGateExceptionPadEndsTheCall) {
  // The pad is where an exception from compartment code lands, with
  // compartment rights: jumping there is the same as throwing. The call ends
  // as kAborted on the host's own stack and frame; nothing of the
  // compartment's registers is used.
  auto box = MakeBox({.name = "pad-jumper"});
  ASSERT_NE(box, nullptr);
  mpkbox_test_jump_target =
      reinterpret_cast<uint64_t>(mpkbox_gate_exception_pad);
  attack_regs = PayloadRegs();
  absl::Status s = box->Call(&AttackFromInside);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_NE(box->last_fault(), nullptr);
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
  EXPECT_EQ(internal::ReadPkru(), 0u);
  EXPECT_TRUE(UsableAfterReset(box.get()));
}

}  // namespace
}  // namespace mpkbox

// Signals at the edges of the gate's windows, and several delivered at once.
namespace mpkbox {
namespace {

std::atomic<uint64_t> edge_deliveries{0};
void CountDelivery(int) { edge_deliveries.fetch_add(1); }
void Trivial() {}
// Calls back into the host over and over; after each return, the selector
// must read BLOCK (compartment code is running). Returns how often it did not.
uint64_t CountAllowWhileInside(void (*cb)(), uint64_t rounds) {
  const volatile uint8_t* selector = &mpkbox_tls_thread->selector;
  uint64_t allow = 0;
  for (uint64_t i = 0; i < rounds; ++i) {
    cb();
    allow += *selector == MPKBOX_SELECTOR_ALLOW;
  }
  return allow;
}

TEST(SignalEdgeTest, SelectorIsBlockWheneverCompartmentCodeRuns) {
  auto box = MakeBox({.name = "edges"});
  auto cb = box->RegisterCallback(&Trivial);
  ASSERT_TRUE(cb.ok());
  struct sigaction sa {}, old{};
  sa.sa_handler = CountDelivery;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  const pid_t pid = getpid();
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  std::atomic<bool> stop{false};
  edge_deliveries = 0;
  std::thread sender([&] {
    while (!stop.load()) {
      syscall(SYS_tgkill, pid, tid, SIGUSR1);
      for (int i = 0; i < 200; ++i) asm volatile("");
    }
  });
  uint64_t allow = 0;
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (edge_deliveries.load() < 5000 &&
         std::chrono::steady_clock::now() < give_up) {
    auto r = box->Call(&CountAllowWhileInside, cb->get(), uint64_t{20000});
    ASSERT_TRUE(r.ok()) << r.status();
    allow += r->UnverifiedValue("test");
  }
  stop = true;
  sender.join();
  ASSERT_EQ(sigaction(SIGUSR1, &old, nullptr), 0);
  EXPECT_EQ(allow, 0u) << "with " << edge_deliveries.load() << " signals";
  EXPECT_GT(edge_deliveries.load(), 200u);  // the attack surface was hit
}

std::atomic<int> usr1_seen{0}, usr2_seen{0};

TEST(SignalEdgeTest, SignalsDeliveredTogetherAreAllAccepted) {
  auto box = MakeBox({.name = "together"});
  ASSERT_TRUE(box->Call(&Trivial).ok());  // this thread runs compartments
  struct sigaction a1 {}, a2{}, o1{}, o2{};
  a1.sa_handler = +[](int) { usr1_seen++; };
  a2.sa_handler = +[](int) { usr2_seen++; };
  ASSERT_EQ(sigaction(SIGUSR1, &a1, &o1), 0);
  ASSERT_EQ(sigaction(SIGUSR2, &a2, &o2), 0);
  sigset_t both, saved;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGUSR2);
  for (int i = 0; i < 100; ++i) {
    pthread_sigmask(SIG_BLOCK, &both, &saved);
    raise(SIGUSR1);
    raise(SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);  // both frames at once
  }
  EXPECT_EQ(usr1_seen.load(), 100);
  EXPECT_EQ(usr2_seen.load(), 100);
  ASSERT_EQ(sigaction(SIGUSR1, &o1, nullptr), 0);
  ASSERT_EQ(sigaction(SIGUSR2, &o2, nullptr), 0);
  EXPECT_TRUE(box->Call(&Trivial).ok());
}

}  // namespace
}  // namespace mpkbox
