// Helpers shared by the test suites (library mpkbox_test_util).
// Child processes: EXPECT_EXIT only; gtest shows their stderr, can re-exec.
#ifndef MPKBOX_TESTS_TEST_UTIL_H_
#define MPKBOX_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mpkbox/mpkbox.h"

namespace mpkbox::testing {

// Without PKU (test_main.cc), every test is skipped except those declared,
// after their definition, with MPKBOX_TEST_RUNS_WITHOUT_PKU(Suite, Name).
bool RegisterRunsWithoutPku(const char* suite, const char* name);
#define MPKBOX_TEST_RUNS_WITHOUT_PKU(suite, name)              \
  [[maybe_unused]] static const bool suite##_##name##_no_pku = \
      ::mpkbox::testing::RegisterRunsWithoutPku(#suite, #name)

// True in the emulated PKU guest (tests/guest/pku_guest.sh sets
// MPKBOX_EMULATED_PKU=1), where timings mean nothing.
bool UnderEmulation();
#define MPKBOX_SKIP_UNDER_EMULATION(why)                             \
  do {                                                               \
    if (::mpkbox::testing::UnderEmulation()) {                       \
      GTEST_SKIP() << "under emulation (MPKBOX_EMULATED_PKU): " why; \
    }                                                                \
  } while (0)

// Creates a compartment or fails the test.
inline std::unique_ptr<Compartment> MakeBox(CompartmentOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Compartment>> box =
      Compartment::Create(std::move(options));
  EXPECT_TRUE(box.ok()) << box.status();
  return box.ok() ? std::move(*box) : nullptr;
}

// The raw value of a successful call, or fails the test.
template <typename T>
T Value(const absl::StatusOr<Tainted<T>>& r) {
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->UnverifiedValue("test inspects the raw result") : T{};
}

// Compartment memory for `count` T, zeroed (Allocate), or fails the test.
template <typename T>
T* Buffer(Compartment* box, size_t count = 1) {
  absl::StatusOr<void*> p = box->Allocate(sizeof(T) * count);
  EXPECT_TRUE(p.ok()) << p.status();
  if (p.ok()) memset(*p, 0, sizeof(T) * count);
  return p.ok() ? static_cast<T*>(*p) : nullptr;
}

// A NUL-terminated copy of `s` in the compartment's heap.
inline char* String(Compartment* box, const std::string& s) {
  char* p = Buffer<char>(box, s.size() + 1);
  memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// Options whose stdio sink appends every line loaded code prints (stdout
// and stderr) to *lines.
inline CompartmentOptions CollectingOutput(std::string name,
                                           std::vector<std::string>* lines) {
  CompartmentOptions options;
  options.name = std::move(name);
  options.stdio_sink = [lines](StdioStream, absl::string_view line) {
    lines->emplace_back(line);
  };
  return options;
}

// The loaded copy of a native function, by the native one's name and type
// (library tests compare a Debian library inside with the same one native):
// INSIDE(box, json_object_new_object). Fails the test if it is missing.
#define INSIDE(box, fn) \
  ::mpkbox::testing::Inside<decltype(::fn)>(box, #fn)
template <typename Fn>
Fn* Inside(Compartment* box, const char* name) {
  absl::StatusOr<Fn*> f = box->Lookup<Fn>(name);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : nullptr;
}

// ---- the process, from /proc ------------------------------------------------

// Number of lines in /proc/self/maps.
int CountMappings();

// Resident pages (/proc/self/statm).
long RssPages();

// A copy of /proc/self/maps taken without allocating, so that taking one
// does not itself grow the heap it measures. Lives on the caller's stack.
class MappingsSnapshot {
 public:
  MappingsSnapshot();
  int count() const;
  // The lines added since `before` and those gone, for a failure message.
  std::string DiffFrom(const MappingsSnapshot& before) const;

 private:
  char text_[256 << 10];
  size_t size_ = 0;
};

// Addresses in [begin, end) where `pattern` starts, at any byte offset.
std::vector<uintptr_t> FindBytes(const char* begin, const char* end,
                                 const std::vector<uint8_t>& pattern);
// The same in a buffer: offsets into `bytes`.
std::vector<size_t> FindBytes(const std::vector<uint8_t>& bytes,
                              const std::vector<uint8_t>& pattern);

// Every WRPKRU (0f 01 ef) in [begin, end), also those whose 0f escape
// gadget_guard.cc replaced with int3: the addresses of the escape bytes.
std::vector<uintptr_t> FindWrpkru(const char* begin, const char* end);

// ---- compartment code (runs inside; also fine on the host) ------------------

// Calls `target` with EAX = ECX = EDX = 0 (the PKRU value that opens every
// key), as a jump to a stray WRPKRU would, then writes 666 to
// mpkbox_test_guard_target.
void JumpAndWrite(uintptr_t target);
// Runs JumpAndWrite(site) in `box` and expects it stopped: kAborted saying
// "jumped to <what>" and naming the compartment, the host global unchanged,
// the host's PKRU back, and the compartment usable after Reset.
void ExpectJumpStopped(Compartment* box, uintptr_t site,
                       const std::string& what);
// Runtime::Init, and mpkbox_test_guard_target back to 1234, before each.
class GuardedJumpTest : public ::testing::Test {
 protected:
  void SetUp() override;
};

// The address of a local of the calling thread's stack, after `spin` empty
// loop iterations (a call that stays a while).
uintptr_t StackAddress(int spin);

// Busy work for `iterations` rounds (kForever: until a deadline ends it).
constexpr uint64_t kForever = ~uint64_t{0};
uint64_t Spin(uint64_t iterations);

// Allocation traffic of mixed sizes that uses what it gets, as a parser
// would: a checksum, nonzero unless an allocation failed.
uint64_t Churn(int rounds);

// ---- forged jumps from compartment code (gate and signal attacks) ----------

// The host's secret, which only the payload changes (to 666).
constexpr int kHostSecret = 1234;
// The payload's exit code: it ran with host rights.
constexpr int kEscaped = 77;

// Every general register a forged jump loads, in mpkbox_test_jump's order.
struct AttackRegs {
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14,
      r15, rsp;
};

// Register values AttackFromInside replaces before it jumps: the address of
// its fake ucontext (and of the fake siginfo beside it), which would resume
// at the payload with PKRU 0, and an rsp on its own stack whose slots all
// hold the payload.
constexpr uint64_t kFakeFrame = 0xfa4ef4a3e0000001;
constexpr uint64_t kFakeInfo = 0xfa4ef4a3e0000002;
constexpr uint64_t kOwnStack = 0xfa4ef4a3e0000003;

// Set by the host before each Call (key 0: compartment code reads them).
extern AttackRegs attack_regs;
// If nonzero, what the stack slot at kOwnStack holds (the others: payload).
extern uint64_t attack_stack_top;

uint64_t PayloadAddress();
// Every register holds the payload, rsp is kOwnStack: whatever the code at
// the jump target uses to continue, it continues at the payload.
AttackRegs PayloadRegs();

// Compartment code: builds the fake frame and stack, loads attack_regs and
// jumps to mpkbox_test_jump_target. Never returns.
void AttackFromInside();

// kAborted, reported as a forged jump, and the host's secret unchanged.
bool ContainedAsForgery(Compartment* box, const absl::Status& s);

}  // namespace mpkbox::testing

extern "C" {
// A host global compartment code must not write (key 0, read-only inside):
// 1234 until JumpAndWrite's write gets through.
extern volatile uint64_t mpkbox_test_guard_target;
// Where AttackFromInside jumps (key 0: read by the attack code).
extern uint64_t mpkbox_test_jump_target;
// kHostSecret until the payload runs with host rights.
extern int mpkbox_test_host_secret;
// What an escape runs: writes 666 to the host's secret, turns syscall
// dispatch off (both need host rights; with compartment rights the first
// store faults) and exits kEscaped. Needs no stack.
void mpkbox_test_payload();
// Loads every register from `regs` (an AttackRegs) and jumps.
void mpkbox_test_jump(const void* regs);
}

#endif  // MPKBOX_TESTS_TEST_UTIL_H_
