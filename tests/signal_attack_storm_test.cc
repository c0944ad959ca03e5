// The resume stub under a storm of host signals (signal attacks:
// signal_attack_util.h): compartment code interrupted thousands of times
// gets back every register, flag, vector and red-zone byte, and the controls
// show that the checksum sees one changed piece of that state.
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/keys/pku.h"
#include "tests/signal_attack_util.h"
#include "tests/test_util.h"

// Compartment code: a long loop whose state lives in every general
// register, CF, ZF, xmm0-2, xmm15 and the red zone; it returns a checksum of
// all of it, XORed with the PKRU it ends with.
asm(R"(
  .text
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
extern "C" uint64_t mpkbox_test_storm(uint64_t iterations);
extern "C" char mpkbox_test_storm_loop[], mpkbox_test_storm_loop_end[];

namespace mpkbox::signal_attack {
namespace {

using ::mpkbox::testing::kHostSecret;
using ::mpkbox::testing::MakeBox;

// The resume stub under a storm of host signals.

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
    absl::StatusOr<Tainted<uint64_t>> got =
        box->Call(&mpkbox_test_storm, iterations);
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

std::string CorruptName(const ::testing::TestParamInfo<Corrupt>& param_info) {
  static const char* const kNames[] = {"None", "CarryFlag", "Rbx",
                                       "Rdx",  "Xmm1",      "RedZone"};
  return kNames[static_cast<int>(param_info.param)];
}

INSTANTIATE_TEST_SUITE_P(EachKindOfState, StormControlTest,
                         ::testing::Values(Corrupt::kCarryFlag, Corrupt::kRbx,
                                           Corrupt::kRdx, Corrupt::kXmm1,
                                           Corrupt::kRedZone),
                         CorruptName);

}  // namespace
}  // namespace mpkbox::signal_attack
