// Memory isolation: compartment code may not write host memory (key 0 is
// read-only under Ambient::kReadOnly; the host's stacks, data and heap carry
// the trusted key), may not touch the runtime's trusted state or another
// compartment, and may read ambient memory. Each attack runs for real; the
// kernel's fault (SEGV_PKUERR, with the key of the target) becomes kAborted,
// the host's memory is unchanged and the process goes on. The attacks pass
// addresses as integers: Call refuses pointer arguments into host memory
// before the gate (host_memory_test.cc), an attacker need not ask.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "trampolines/thread_block.h"
#include "runtime/runtime_state.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

// A contained protection-key fault: kAborted naming the compartment, a
// report with the key of the address, calls refused until Reset, and the
// compartment usable after it.
void ExpectContainedFault(Compartment* box, const absl::Status& s, int code,
                          int key) {
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()),
              ::testing::HasSubstr("'" + box->name() + "'"));
  const FaultReport* f = box->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->signal, SIGSEGV);
  EXPECT_EQ(f->code, code) << f->what;
  EXPECT_EQ(f->pkey, key) << f->what;
  EXPECT_EQ(f->compartment, box->name());
  EXPECT_EQ(box->Call(+[] {}).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(box->last_fault(), nullptr);
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

int host_global = 1234;
const int ambient_constant = 4321;  // read-only data: key 0

void WriteHostGlobal() { host_global = 666; }
void WriteThrough(uintptr_t p) { *reinterpret_cast<volatile int*>(p) = 666; }
int ReadThrough(uintptr_t p) { return *reinterpret_cast<volatile int*>(p); }
uint64_t ReadU64(uintptr_t p) {
  return *reinterpret_cast<volatile uint64_t*>(p);
}
void WriteU8(uintptr_t p) { *reinterpret_cast<volatile uint8_t*>(p) = 1; }
uintptr_t Addr(const volatile void* p) {
  return reinterpret_cast<uintptr_t>(p);
}

// A page the host mapped itself (not its heap): key 0, ambient memory.
int* AmbientPage() {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<int*>(p);
}
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
  EXPECT_EQ(Value(box->Call(&ReadThrough, Addr(&ambient_constant))), 4321);
  int* page = AmbientPage();
  ASSERT_NE(page, nullptr);
  *page = 77;
  EXPECT_EQ(Value(box->Call(&ReadThrough, Addr(page))), 77);
  EXPECT_EQ(Value(box->Call(&WriteOwnStack)), 255 * 256 / 2);
  munmap(page, 4096);
}

// The host heap carries the trusted key (DESIGN.md 2): not even readable.
TEST(IsolationTest, ReadOfHostHeapFaults) {
  auto box = MakeBox({.name = "reader"});
  auto on_heap = std::make_unique<int>(88);
  ExpectContainedFault(box.get(),
                       box->Call(&ReadThrough, Addr(on_heap.get())).status(),
                       SEGV_PKUERR, internal::Keys().trusted);
  EXPECT_EQ(*on_heap, 88);
}

TEST(IsolationTest, WriteToHostGlobalFaults) {
  auto box = MakeBox({.name = "writer"});
  ExpectContainedFault(box.get(), box->Call(&WriteHostGlobal), SEGV_PKUERR,
                       internal::Keys().trusted);
  EXPECT_EQ(host_global, 1234);
}

TEST(IsolationTest, WriteToHostStackFaults) {
  auto box = MakeBox({.name = "writer"});
  int on_stack = 1;
  ExpectContainedFault(box.get(), box->Call(&WriteThrough, Addr(&on_stack)),
                       SEGV_PKUERR, internal::Keys().trusted);
  EXPECT_EQ(on_stack, 1);
}

TEST(IsolationTest, WriteToHostHeapFaults) {
  auto box = MakeBox({.name = "writer"});
  auto on_heap = std::make_unique<int>(1);
  ExpectContainedFault(box.get(),
                       box->Call(&WriteThrough, Addr(on_heap.get())),
                       SEGV_PKUERR, internal::Keys().trusted);
  EXPECT_EQ(*on_heap, 1);
}

TEST(IsolationTest, ReadOfTrustedThreadStateFaults) {
  auto box = MakeBox({.name = "snoop"});
  ASSERT_TRUE(box->Call(&WriteOwnStack).ok());  // the thread block exists
  const uintptr_t depth = Addr(&internal::CurrentThreadBlock()->depth);
  ExpectContainedFault(box.get(), box->Call(&ReadU64, depth).status(),
                       SEGV_PKUERR, internal::Keys().trusted);
}

TEST(IsolationTest, SelectorPageIsReadOnlyInside) {
  auto box = MakeBox({.name = "selector"});
  ASSERT_TRUE(box->Call(&WriteOwnStack).ok());
  const uintptr_t sel = Addr(&mpkbox_tls_thread->selector);
  // Readable: the kernel must read it during a compartment's syscall.
  EXPECT_EQ(Value(box->Call(&ReadU64, sel)) & 0xff,
            1u);  // BLOCK while inside
  ExpectContainedFault(box.get(), box->Call(&WriteU8, sel), SEGV_PKUERR,
                       internal::Keys().selector);
}

TEST(IsolationTest, AnotherCompartmentsStackIsClosed) {
  auto a = MakeBox({.name = "a"});
  auto b = MakeBox({.name = "b"});
  uintptr_t b_stack = Value(b->Call(&AddressOnOwnStack));
  ASSERT_TRUE(b->Contains(reinterpret_cast<void*>(b_stack), 4));
  ASSERT_FALSE(a->Contains(reinterpret_cast<void*>(b_stack), 4));
  ExpectContainedFault(
      a.get(),
      a->Call(&ReadThrough, b_stack).status(),
      SEGV_PKUERR, b->pkey());
  ExpectContainedFault(
      a.get(), a->Call(&WriteThrough, b_stack),
      SEGV_PKUERR, b->pkey());
  EXPECT_THAT(a->Call(&WriteThrough, b_stack).message(),
              ::testing::HasSubstr("compartment 'b'"));
}

TEST(IsolationTest, ReadWriteAmbientMayWriteKeyZero) {
  auto box = MakeBox({.name = "rw", .ambient = Ambient::kReadWrite});
  int* page = AmbientPage();
  ASSERT_NE(page, nullptr);
  *page = 1;
  ASSERT_TRUE(box->Call(&WriteThrough, Addr(page)).ok());
  EXPECT_EQ(*page, 666);
  munmap(page, 4096);
}

TEST(IsolationTest, ReadWriteAmbientStillClosesTrustedState) {
  auto box = MakeBox({.name = "rw", .ambient = Ambient::kReadWrite});
  ASSERT_TRUE(box->Call(&WriteOwnStack).ok());
  const uintptr_t depth = Addr(&internal::CurrentThreadBlock()->depth);
  ExpectContainedFault(box.get(), box->Call(&ReadU64, depth).status(),
                       SEGV_PKUERR, internal::Keys().trusted);
}

TEST(IsolationTest, StackOverflowHitsTheGuardPage) {
  auto box = MakeBox({.name = "deep", .stack_bytes = 64 << 10});
  absl::Status s = box->Call(&Recurse, 1 << 20).status();
  EXPECT_THAT(std::string(s.message()),
              ::testing::HasSubstr("stack overflow"));
  ExpectContainedFault(box.get(), s, SEGV_ACCERR, box->pkey());
}

}  // namespace
}  // namespace mpkbox
