// Memory isolation: compartment code may not write host memory (key 0 is
// read-only under Ambient::kReadOnly), may not touch the runtime's trusted
// state or another compartment, and may read ambient memory. Each attack runs
// for real in a child process; the child's SIGSEGV handler exits 42 only when
// the kernel reports a protection-key fault (SEGV_PKUERR).
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

constexpr int kPkuFault = 42;
constexpr int kOtherFault = 43;

void OnSegv(int, siginfo_t* info, void*) {
  _exit(info->si_code == SEGV_PKUERR ? kPkuFault : kOtherFault);
}

// The handler needs a stack on key 0: the kernel starts it with PKRU's
// default, which cannot touch the compartment's stack.
void ExitOnSegv() {
  static char alt[64 << 10];
  stack_t ss{};
  ss.ss_sp = alt;
  ss.ss_size = sizeof(alt);
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = OnSegv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
}

int host_global = 1234;

void WriteHostGlobal() { host_global = 666; }
void WriteThrough(int* p) { *p = 666; }
int ReadThrough(const int* p) { return *p; }
uint64_t ReadU64(const uint64_t* p) { return *p; }
void WriteU8(uint8_t* p) { *p = 1; }
uintptr_t AddressOnOwnStack() {
  volatile int local = 5;
  return reinterpret_cast<uintptr_t>(&local);
}
int WriteOwnStack() {
  volatile int buf[256];
  for (int i = 0; i < 256; ++i) buf[i] = i;
  int sum = 0;
  for (int i = 0; i < 256; ++i) sum += buf[i];
  return sum;
}

// Touches every page on the way down, as real recursion does.
int Recurse(int n) {
  volatile char frame[512];
  frame[0] = static_cast<char>(n);
  return n == 0 ? frame[0] : Recurse(n - 1) + frame[0];
}

TEST(IsolationTest, CompartmentReadsAmbientMemory) {
  auto box = MakeBox({.name = "reader"});
  int on_stack = 77;
  auto on_heap = std::make_unique<int>(88);
  EXPECT_EQ(Value(box->Call(&ReadThrough, &host_global)), 1234);
  EXPECT_EQ(Value(box->Call(&ReadThrough, &on_stack)), 77);
  EXPECT_EQ(Value(box->Call(&ReadThrough, on_heap.get())), 88);
  EXPECT_EQ(Value(box->Call(&WriteOwnStack)), 255 * 256 / 2);
}

TEST(IsolationDeathTest, WriteToHostGlobalFaults) {
  auto box = MakeBox({.name = "writer"});
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(box->Call(&WriteHostGlobal));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
  EXPECT_EQ(host_global, 1234);
}

TEST(IsolationDeathTest, WriteToHostStackFaults) {
  auto box = MakeBox({.name = "writer"});
  int on_stack = 1;
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(box->Call(&WriteThrough, &on_stack));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
  EXPECT_EQ(on_stack, 1);
}

TEST(IsolationDeathTest, WriteToHostHeapFaults) {
  auto box = MakeBox({.name = "writer"});
  auto on_heap = std::make_unique<int>(1);
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(box->Call(&WriteThrough, on_heap.get()));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
}

TEST(IsolationDeathTest, ReadOfTrustedThreadStateFaults) {
  auto box = MakeBox({.name = "snoop"});
  ASSERT_TRUE(box->Call(&WriteOwnStack).ok());  // the thread block exists
  const uint64_t* depth = &internal::CurrentThreadBlock()->depth;
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(box->Call(&ReadU64, depth));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
}

TEST(IsolationDeathTest, SelectorPageIsReadOnlyInside) {
  auto box = MakeBox({.name = "selector"});
  ASSERT_TRUE(box->Call(&WriteOwnStack).ok());
  auto* sel = const_cast<uint8_t*>(&mpkbox_tls_thread->selector);
  // Readable: the kernel must read it during a compartment's syscall.
  EXPECT_EQ(Value(box->Call(&ReadU64, reinterpret_cast<const uint64_t*>(
                                          mpkbox_tls_thread))) &
                0xff,
            1u);  // BLOCK while inside
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(box->Call(&WriteU8, sel));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
}

TEST(IsolationDeathTest, AnotherCompartmentsStackIsClosed) {
  auto a = MakeBox({.name = "a"});
  auto b = MakeBox({.name = "b"});
  uintptr_t b_stack = Value(b->Call(&AddressOnOwnStack));
  ASSERT_TRUE(b->Contains(reinterpret_cast<void*>(b_stack), 4));
  ASSERT_FALSE(a->Contains(reinterpret_cast<void*>(b_stack), 4));
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(
            a->Call(&ReadThrough, reinterpret_cast<const int*>(b_stack)));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(
            a->Call(&WriteThrough, reinterpret_cast<int*>(b_stack)));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
}

TEST(IsolationTest, ReadWriteAmbientMayWriteKeyZero) {
  auto box = MakeBox({.name = "rw", .ambient = Ambient::kReadWrite});
  int on_stack = 1;
  ASSERT_TRUE(box->Call(&WriteThrough, &on_stack).ok());
  EXPECT_EQ(on_stack, 666);
}

TEST(IsolationDeathTest, ReadWriteAmbientStillClosesTrustedState) {
  auto box = MakeBox({.name = "rw", .ambient = Ambient::kReadWrite});
  ASSERT_TRUE(box->Call(&WriteOwnStack).ok());
  const uint64_t* depth = &internal::CurrentThreadBlock()->depth;
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(box->Call(&ReadU64, depth));
        _exit(0);
      },
      ::testing::ExitedWithCode(kPkuFault), "");
}

TEST(IsolationDeathTest, StackOverflowHitsTheGuardPage) {
  auto box = MakeBox({.name = "deep", .stack_bytes = 64 << 10});
  EXPECT_EXIT(
      {
        ExitOnSegv();
        static_cast<void>(box->Call(&Recurse, 1 << 20));
        _exit(0);
      },
      ::testing::ExitedWithCode(kOtherFault), "");  // SEGV_ACCERR: guard page
}

}  // namespace
}  // namespace mpkbox
