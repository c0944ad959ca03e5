// Replays on the trusted signal stack (signal attacks: signal_attack_util.h):
// a real kernel frame the dispatcher already consumed, jumps that reuse
// what earlier frames left there, rsp pointed into the trusted signal stack
// before a fault, and a signal handler of the compartment's own.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/signal_attack_util.h"
#include "runtime/signal_frame.h"
#include "tests/test_util.h"

// Compartment code written the way an attacker would, in assembly:
// - fill_and_trap puts its argument in every general register but rsp and
//   raises SIGILL: the kernel saves them in a frame on the signal stack;
// - trap_with_rsp points rsp at its argument and raises SIGILL.
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
)");
extern "C" void mpkbox_test_fill_and_trap(uint64_t value);
extern "C" void mpkbox_test_trap_with_rsp(uint64_t rsp);

// own_handler: a signal handler compartment code would install for itself
// (CompartmentCannotRunAHandlerOfItsOwn); it runs the payload.
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

namespace mpkbox::signal_attack {
namespace {

using ::mpkbox::testing::AttackFromInside;
using ::mpkbox::testing::attack_regs;
using ::mpkbox::testing::AttackRegs;
using ::mpkbox::testing::ContainedAsForgery;
using ::mpkbox::testing::kFakeInfo;
using ::mpkbox::testing::kHostSecret;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::PayloadAddress;
using ::mpkbox::testing::PayloadRegs;

constexpr int kHandlerSubverted = 78;  // a host handler ran on a forged frame
using ::mpkbox::internal::kConsumedFrame;  // the dispatcher's mark

// ---------------------------------------------------------------------------
// The host's SIGUSR1 handler for the replay tests: records the frame the
// kernel built, and, once the attack is armed, reports a forged call.
MPKBOX_COMPARTMENT_READABLE std::atomic<int> usr1_calls{0};
MPKBOX_COMPARTMENT_READABLE std::atomic<uintptr_t> usr1_uc{0};
MPKBOX_COMPARTMENT_READABLE std::atomic<uintptr_t> usr1_info{0};
MPKBOX_COMPARTMENT_READABLE std::atomic<uintptr_t> usr1_sp{0};
MPKBOX_COMPARTMENT_READABLE std::atomic<bool> usr1_armed{false};

void RecordingHandler(int, siginfo_t* info, void* uc) {
  volatile char here = 0;
  usr1_calls.fetch_add(1);
  if (usr1_armed.load()) _exit(kHandlerSubverted);
  usr1_uc = reinterpret_cast<uintptr_t>(uc);
  usr1_info = reinterpret_cast<uintptr_t>(info);
  usr1_sp = reinterpret_cast<uintptr_t>(&here);
}

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
// Replays: a real kernel frame the dispatcher already consumed, and what
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
        // WRPKRU needs EDX = 0: the entry takes the ucontext from r8.
        r.rdx = 0;
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

}  // namespace
}  // namespace mpkbox::signal_attack
