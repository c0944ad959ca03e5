// Faults and signals: every kind of compartment fault becomes a status with
// a report; nothing leaks over thousands of them; the host's own faults and
// handlers behave as without mpkbox; exceptions stop at the gate; calls past
// their call_timeout are interrupted.
#include <dirent.h>
#include <setjmp.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "trampolines/thread_block.h"
#include "runtime/fault_report.h"
#include "runtime/keys/pku.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::CountMappings;
using ::mpkbox::testing::kForever;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::UnderEmulation;
using ::mpkbox::testing::MappingsSnapshot;
using ::mpkbox::testing::RssPages;
using ::mpkbox::testing::Spin;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

int CountFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}
int CountTimers() {
  std::ifstream timers("/proc/self/timers");
  std::string line;
  int n = 0;
  while (std::getline(timers, line)) n += line.rfind("ID:", 0) == 0;
  return n;
}

// An address nothing maps (the compiler must not see a constant null).
// Read inside: a global the compartment may read.
MPKBOX_COMPARTMENT_READABLE volatile uintptr_t unmapped_address = 16;

// The faulting compartment functions, one per kind.
int ReadUnmapped() {
  return *reinterpret_cast<volatile int*>(unmapped_address);
}
int Divide(int a, int b) { return a / b; }
void Ud2() { __builtin_trap(); }
void Int3() { asm volatile("int3"); }
void Abort() { abort(); }
int ReadAt(const volatile int* p) { return *p; }

void ExpectFault(Compartment* box, const absl::Status& s, int sig,
                 const std::string& text) {
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("compartment '" + box->name() + "'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(text));
  const FaultReport* f = box->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->signal, sig);
  EXPECT_EQ(f->compartment, box->name());
  EXPECT_NE(f->ip, 0u);
  EXPECT_FALSE(f->backtrace.empty());
  EXPECT_EQ(box->Call(+[] {}).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

TEST(FaultTest, UnmappedRead) {
  auto box = MakeBox({.name = "segv"});
  ExpectFault(box.get(), box->Call(&ReadUnmapped).status(), SIGSEGV,
              "SEGV_MAPERR");
}

TEST(FaultTest, BusErrorPastTheEndOfAFile) {
  auto box = MakeBox({.name = "bus"});
  int fd = memfd_create("empty", 0);
  ASSERT_GE(fd, 0);
  void* page = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(page, MAP_FAILED);
  ExpectFault(box.get(),
              box->Call(&ReadAt, static_cast<const volatile int*>(page))
                  .status(),
              SIGBUS, "BUS_ADRERR");
  munmap(page, 4096);
  close(fd);
}

TEST(FaultTest, DivideByZero) {
  auto box = MakeBox({.name = "fpe"});
  ExpectFault(box.get(), box->Call(&Divide, 1, 0).status(), SIGFPE,
              "FPE_INTDIV");
  EXPECT_THAT(box->Call(&Divide, 1, 0).status().message(),
              HasSubstr("Divide"));  // symbolized
}

TEST(FaultTest, IllegalInstruction) {
  auto box = MakeBox({.name = "ill"});
  ExpectFault(box.get(), box->Call(&Ud2), SIGILL, "SIGILL");
}

TEST(FaultTest, Breakpoint) {
  auto box = MakeBox({.name = "trap"});
  ExpectFault(box.get(), box->Call(&Int3), SIGTRAP, "SIGTRAP");
}

TEST(FaultTest, AbortInside) {
  // abort() writes libc's lock and raises SIGABRT: with key 0 writable the
  // raise happens and is contained; read-only, the lock write faults first.
  auto rw = MakeBox({.name = "abort-rw", .ambient = Ambient::kReadWrite});
  ExpectFault(rw.get(), rw->Call(&Abort), SIGABRT, "abort()");
  auto ro = MakeBox({.name = "abort-ro"});
  EXPECT_EQ(ro->Call(&Abort).code(), absl::StatusCode::kAborted);
}

MPKBOX_COMPARTMENT_READABLE int ambient_value = 5;  // key 0

TEST(FaultTest, ReportNamesTheKeyOwner) {
  auto box = MakeBox({.name = "reporter"});
  absl::Status s = box->Call(+[] { ambient_value = 6; });
  EXPECT_THAT(std::string(s.message()), HasSubstr("SEGV_PKUERR"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("key 0: ambient memory"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrFormat("0x%x", reinterpret_cast<uintptr_t>(
                                                    &ambient_value))));
  EXPECT_EQ(box->last_fault()->pkey, 0);
  EXPECT_EQ(ambient_value, 5);
  ASSERT_TRUE(box->Reset().ok());
  // The host's own data: the trusted key, named as such.
  static int host_value = 5;
  s = box->Call(+[] { host_value = 6; });
  EXPECT_THAT(std::string(s.message()), HasSubstr("host data"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrFormat("0x%x", reinterpret_cast<uintptr_t>(
                                                    &host_value))));
  EXPECT_EQ(box->last_fault()->pkey, internal::Keys().trusted);
  EXPECT_EQ(host_value, 5);
}

// An address, not a pointer: Call checks pointer arguments before the fault.
int ReadAddress(uintptr_t p) {
  return *reinterpret_cast<const volatile int*>(p);
}
void WriteAddress(uintptr_t p) { *reinterpret_cast<volatile int*>(p) = 1; }
uintptr_t AddressOnOwnStack() {
  volatile int local = 5;
  return reinterpret_cast<uintptr_t>(&local);
}

// The report's key comes from mpkbox's registry (the kernel's si_pkey for
// SEGV_PKUERR), not from /proc/self/smaps; it must still be the kernel's
// answer, which PkeyOfAddress reads from smaps, for every kind of page a
// compartment can fault on.
TEST(FaultTest, ReportKeyFromTheRegistryMatchesTheKernel) {
  auto a = MakeBox({.name = "registry-a"});
  auto b = MakeBox({.name = "registry-b"});
  auto guard_of = [](uintptr_t on_stack) {
    for (const internal::CallContext& ctx :
         internal::CurrentThreadBlock()->contexts) {
      if (on_stack - ctx.stack_base < ctx.stack_size) return ctx.stack_base;
    }
    return uintptr_t{0};
  };
  const uintptr_t a_guard = guard_of(Value(a->Call(&AddressOnOwnStack)));
  const uintptr_t b_guard = guard_of(Value(b->Call(&AddressOnOwnStack)));
  ASSERT_NE(a_guard, 0u);
  ASSERT_NE(b_guard, 0u);
  absl::StatusOr<void*> a_heap = a->Allocate(64);
  ASSERT_TRUE(a_heap.ok());
  const uintptr_t a_unused = reinterpret_cast<uintptr_t>(*a_heap) + (1 << 30);
  ASSERT_FALSE(a->Contains(reinterpret_cast<void*>(a_unused), 1));
  absl::StatusOr<void*> b_heap = b->Allocate(64);
  ASSERT_TRUE(b_heap.ok());
  static int host_value = 7;
  struct Case {
    const char* what;
    bool write;
    uintptr_t address;
    int code;
    int key;
  } cases[] = {
      // Reads of PROT_NONE pages whose key allows them: SEGV_ACCERR, and the
      // key comes from the registry.
      {"its own stack guard", false, a_guard, SEGV_ACCERR, a->pkey()},
      {"an unused part of its own window", false, a_unused, SEGV_ACCERR, 0},
      // PROT_NONE, but the key is checked first: the kernel names it.
      {"another compartment's stack guard", false, b_guard, SEGV_PKUERR,
       b->pkey()},
      {"another compartment's heap", true,
       reinterpret_cast<uintptr_t>(*b_heap), SEGV_PKUERR, b->pkey()},
      {"a host global", true, reinterpret_cast<uintptr_t>(&host_value),
       SEGV_PKUERR,
       internal::PkeyOfAddress(reinterpret_cast<uintptr_t>(&host_value))},
      {"an unmapped address", false, 16, SEGV_MAPERR, -1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    absl::Status s =
c.write ? a->Call(&WriteAddress, c.address)
                : a->Call(&ReadAddress, c.address).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    const FaultReport* f = a->last_fault();
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->code, c.code) << f->what;
    EXPECT_EQ(f->pkey, c.key) << f->what;
    EXPECT_EQ(f->pkey, internal::PkeyOfAddress(f->address)) << f->what;
    ASSERT_TRUE(a->Reset().ok());
  }
  EXPECT_TRUE(b->Call(+[] {}).ok());
}

// host -> A -> host callback -> B faults: B's call fails, A's goes on.
Compartment* faulty_b;
int CallFaultyB() {
  absl::Status s = faulty_b->Call(&ReadUnmapped).status();
  return s.code() == absl::StatusCode::kAborted ? 7 : -1;
}
int AUsesCallback(int (*cb)()) { return cb() + 1; }

TEST(FaultTest, FaultInNestedChainUnwindsToTheRightGate) {
  auto a = MakeBox({.name = "a"});
  auto b = MakeBox({.name = "b"});
  faulty_b = b.get();
  auto cb = a->RegisterCallback(&CallFaultyB);
  ASSERT_TRUE(cb.ok());
  EXPECT_EQ(Value(a->Call(&AUsesCallback, cb->get())), 8);
  EXPECT_EQ(a->last_fault(), nullptr);
  ASSERT_NE(b->last_fault(), nullptr);
  EXPECT_EQ(b->last_fault()->signal, SIGSEGV);
  EXPECT_EQ(internal::CurrentThreadBlock()->depth, 0u);
}

TEST(FaultTest, TenThousandFaultsWithResetLeakNothing) {
  auto box = MakeBox({.name = "churn"});
  for (int i = 0; i < 100; ++i) {  // warm up caches and lazy state
    ASSERT_FALSE(box->Call(&ReadUnmapped).ok());
    ASSERT_TRUE(box->Reset().ok());
  }
  const int fds = CountFds();
  const MappingsSnapshot before;
  const long rss = RssPages();
  // Under emulation each cycle takes ~40 ms; a leak per cycle shows as
  // clearly in 1,000.
  const int cycles = UnderEmulation() ? 1000 : 10000;
  for (int i = 0; i < cycles; ++i) {
    ASSERT_EQ(box->Call(i % 2 ? &Ud2 : &Int3).code(),
              absl::StatusCode::kAborted);
    ASSERT_TRUE(box->Reset().ok());
  }
  EXPECT_EQ(CountFds(), fds);
  const MappingsSnapshot after;
  EXPECT_EQ(after.count(), before.count()) << after.DiffFrom(before);
  EXPECT_LT(RssPages(), rss + 256);  // under 1 MiB of growth
}

// --- The host's own faults and handlers -----------------------------------

std::atomic<int> host_handler_calls{0};
std::atomic<uint32_t> host_handler_pkru{0xffffffff};
char* guarded_page = nullptr;

void FixUpAndCount(int, siginfo_t* info, void*) {
  host_handler_calls++;
  host_handler_pkru = internal::ReadPkru();
  if (info->si_addr == guarded_page) {
    mprotect(guarded_page, 4096, PROT_READ | PROT_WRITE);
  }
}

TEST(HostSignalTest, HandlerInstalledAfterInitRunsWithHostRights) {
  ASSERT_TRUE(Runtime::Init().ok());
  MakeBox({.name = "warm"})->Call(+[] {}).IgnoreError();
  guarded_page = static_cast<char*>(
      mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  struct sigaction sa {}, old{};
  sa.sa_sigaction = FixUpAndCount;
  sa.sa_flags = SA_SIGINFO;
  ASSERT_EQ(sigaction(SIGSEGV, &sa, &old), 0);
  host_handler_calls = 0;
  *reinterpret_cast<volatile char*>(guarded_page) = 1;  // host fault
  EXPECT_EQ(host_handler_calls.load(), 1);
  EXPECT_EQ(host_handler_pkru.load(), 0u);  // not the kernel's init_pkru
  EXPECT_EQ(guarded_page[0], 1);
  struct sigaction mine {};
  ASSERT_EQ(sigaction(SIGSEGV, &old, &mine), 0);
  EXPECT_EQ(mine.sa_sigaction, &FixUpAndCount);  // the host's view
  munmap(guarded_page, 4096);
}

TEST(HostSignalTest, SigactionAndSignalKeepTheirMeaning) {
  ASSERT_TRUE(Runtime::Init().ok());
  auto h1 = +[](int) {};
  auto h2 = +[](int) {};
  struct sigaction a {}, old{};
  a.sa_handler = h1;
  ASSERT_EQ(sigaction(SIGUSR2, &a, &old), 0);
  EXPECT_EQ(signal(SIGUSR2, h2), h1);
  EXPECT_EQ(signal(SIGUSR2, SIG_IGN), h2);
  struct sigaction now {};
  ASSERT_EQ(sigaction(SIGUSR2, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_IGN);
  raise(SIGUSR2);  // ignored, as the host asked
  ASSERT_EQ(sigaction(SIGUSR2, &old, nullptr), 0);
  EXPECT_EQ(sigaction(SIGKILL, &a, nullptr), -1);  // still refused
  EXPECT_EQ(sigaction(NSIG + 1, &a, nullptr), -1);
}

TEST(HostSignalTest, HostSigaltstackKeepsItsMeaningAndFaultsStayContained) {
  auto box = MakeBox({.name = "altstack"});
  ASSERT_TRUE(box->Call(+[] {}).ok());
  static char host_stack[64 << 10];
  stack_t mine{}, before{}, now{};
  mine.ss_sp = host_stack;
  mine.ss_size = sizeof(host_stack);
  ASSERT_EQ(sigaltstack(&mine, &before), 0);
  ASSERT_EQ(sigaltstack(nullptr, &now), 0);
  EXPECT_EQ(now.ss_sp, host_stack);  // the host's view
  // The kernel still delivers on mpkbox's trusted stack.
  EXPECT_EQ(box->Call(&ReadUnmapped).status().code(),
            absl::StatusCode::kAborted);
  ASSERT_TRUE(box->Reset().ok());
  ASSERT_EQ(sigaltstack(&before, nullptr), 0);
}

sigjmp_buf host_recovery;
void JumpOut(int) { siglongjmp(host_recovery, 1); }

TEST(HostSignalTest, HostHandlerLeftByLongjmpDoesNotBreakLaterCalls) {
  auto box = MakeBox({.name = "after-longjmp"});
  ASSERT_TRUE(box->Call(+[] {}).ok());
  struct sigaction sa {}, old{};
  sa.sa_handler = JumpOut;
  ASSERT_EQ(sigaction(SIGUSR2, &sa, &old), 0);
  static std::atomic<int> jumps{0};
  for (jumps = 0; jumps.load() < 3; ++jumps) {
    if (sigsetjmp(host_recovery, 1) == 0) raise(SIGUSR2);  // never returns
  }
  ASSERT_EQ(sigaction(SIGUSR2, &old, nullptr), 0);
  // The handler's frame never returned: Call notices and recovers.
  EXPECT_TRUE(box->Call(+[] {}).ok());
  EXPECT_EQ(box->Call(&ReadUnmapped).status().code(),
            absl::StatusCode::kAborted);  // faults still contained
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

TEST(HostSignalDeathTest, HostFaultWithoutHandlerStillKills) {
  ASSERT_TRUE(Runtime::Init().ok());
  EXPECT_EXIT(
      {
        signal(SIGSEGV, SIG_DFL);
        *reinterpret_cast<volatile int*>(unmapped_address) = 1;
      },
      ::testing::KilledBySignal(SIGSEGV), "");
  EXPECT_EXIT(abort(), ::testing::KilledBySignal(SIGABRT), "");
  EXPECT_EXIT(asm volatile("int3"), ::testing::KilledBySignal(SIGTRAP), "");
}

TEST(HostSignalTest, HostFaultStillDumpsCore) {
  ASSERT_TRUE(Runtime::Init().ok());
  char dir[] = "/tmp/mpkbox-core-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::ifstream pattern("/proc/sys/kernel/core_pattern");
  std::string p;
  std::getline(pattern, p);
  // A piped core_pattern hands the core to a program: no core bit then.
  const bool core_expected = p.empty() || p[0] != '|';
  auto dumped_core = [core_expected](int status) {
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV &&
           (!core_expected || WCOREDUMP(status));
  };
  EXPECT_EXIT(
      {
        rlimit unlimited;
        unlimited.rlim_cur = unlimited.rlim_max = RLIM_INFINITY;
        if (setrlimit(RLIMIT_CORE, &unlimited) != 0 || chdir(dir) != 0) {
          _exit(3);
        }
        signal(SIGSEGV, SIG_DFL);
        *reinterpret_cast<volatile int*>(unmapped_address) = 1;
        _exit(0);
      },
      dumped_core, "")
      << "core_pattern " << p;
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST(HostSignalDeathTest, HandlerInstalledBeforeInitRunsWithHostRights) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a process without Init
  EXPECT_EXIT(
      {
        struct sigaction sa {};
        sa.sa_sigaction = FixUpAndCount;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, nullptr);
        if (!Runtime::Init().ok()) _exit(2);
        MakeBox({.name = "after"})->Call(+[] {}).IgnoreError();
        guarded_page = static_cast<char*>(mmap(
            nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        *reinterpret_cast<volatile char*>(guarded_page) = 1;
        _exit(host_handler_calls == 1 && host_handler_pkru == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(HostSignalDeathTest, ResetHandMeansOnce) {
  ASSERT_TRUE(Runtime::Init().ok());
  EXPECT_EXIT(
      {
        struct sigaction sa {};
        sa.sa_handler = +[](int) { host_handler_calls++; };
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGUSR2, &sa, nullptr);
        raise(SIGUSR2);
        if (host_handler_calls != 1) _exit(1);
        raise(SIGUSR2);  // default action now: terminate
        _exit(2);
      },
      ::testing::KilledBySignal(SIGUSR2), "");
}

// --- Exceptions -------------------------------------------------------------

int Throws() { throw std::runtime_error("host callback failed"); }
int CallsThrower(int (*cb)()) { return cb() + 1; }

TEST(ExceptionTest, ExceptionFromHostCallbackIsAFaultOfTheCall) {
  auto box = MakeBox({.name = "thrower"});
  auto cb = box->RegisterCallback(&Throws);
  ASSERT_TRUE(cb.ok());
  absl::Status s;
  try {
    s = box->Call(&CallsThrower, cb->get()).status();
  } catch (...) {
    FAIL() << "the exception crossed the gate";
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("std::runtime_error"));
  EXPECT_EQ(internal::CurrentThreadBlock()->depth, 0u);
  EXPECT_EQ(internal::ReadPkru(), 0u);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(+[] { return 3; })), 3);
}

int ThrowsInside() { throw 42; }
int CatchesInside() {
  try {
    throw std::runtime_error("inside");
  } catch (const std::exception&) {
    return 9;
  }
}

// The unwinder writes ambient state (dl_iterate_phdr's lock): kReadWrite.
// It also wakes a lock word of libc's with futex; no one waits on it.
std::unique_ptr<Compartment> ExceptionBox() {
  SyscallPolicy policy;
  policy.Deny(SYS_futex, 0);
  return MakeBox({.name = "inner",
                  .ambient = Ambient::kReadWrite,
                  .syscalls = policy});
}

// The unwinder also reads the program's personality pointers (DW.ref.*,
// in .data): host data, closed to compartments unless the host keeps it
// readable. In a child with it readable, an exception caught inside works
// and one leaving compartment code ends the call naming the exception.
TEST(ExceptionDeathTest, ExceptionLeavingCompartmentCodeIsAFault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto box = ExceptionBox();
  EXPECT_EXIT(
      {
        internal::ExposeHostMemoryForTesting();
        if (!box->Call(&CatchesInside).ok()) _exit(1);
        absl::Status s;
        try {
          s = box->Call(&ThrowsInside).status();
        } catch (...) {
          _exit(2);  // the exception crossed the gate
        }
        _exit(s.code() == absl::StatusCode::kAborted &&
                      s.message().find("exception") != std::string::npos &&
                      internal::CurrentThreadBlock()->depth == 0
                  ? 0
                  : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

// With the host's data closed the throw faults first: still contained.
TEST(ExceptionTest, ExceptionInsideWithHostDataClosedIsContained) {
  auto box = ExceptionBox();
  absl::Status s;
  try {
    s = box->Call(&ThrowsInside).status();
  } catch (...) {
    FAIL() << "the exception crossed the gate";
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(internal::CurrentThreadBlock()->depth, 0u);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

// --- call_timeout -------------------------------------------------------------

TEST(TimeoutTest, InfiniteLoopIsInterrupted) {
  auto box = MakeBox({.name = "spinner",
                      .call_timeout = absl::Milliseconds(50)});
  const absl::Time start = absl::Now();
  absl::Status s = box->Call(&Spin, kForever).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("spinner"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("50ms"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(box->Call(+[] {}).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(+[] { return 4; })), 4);  // fast calls finish
}

std::atomic<bool> callback_finished{false};
void SlowHostCallback() {
  absl::SleepFor(absl::Milliseconds(300));  // host code: never interrupted
  callback_finished = true;
}
void CallbackThenSpin(void (*cb)()) {
  cb();
  Spin(kForever);
}

TEST(TimeoutTest, DeadlinePassingInsideAHostCallback) {
  auto box = MakeBox({.name = "patient",
                      .call_timeout = absl::Milliseconds(100)});
  auto cb = box->RegisterCallback(&SlowHostCallback);
  ASSERT_TRUE(cb.ok());
  callback_finished = false;
  const absl::Time start = absl::Now();
  absl::Status s = box->Call(&CallbackThenSpin, cb->get());
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_TRUE(callback_finished);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
}

Compartment* untimed_inner;
absl::StatusCode inner_code;
void CallSpinningInner() {
  inner_code = untimed_inner->Call(&Spin, kForever).status().code();
}
void OuterCallsBack(void (*cb)()) {
  cb();
  Spin(kForever);
}

TEST(TimeoutTest, OuterDeadlineInterruptsANestedCompartment) {
  auto outer = MakeBox({.name = "outer",
                        .call_timeout = absl::Milliseconds(50)});
  auto inner = MakeBox({.name = "inner"});
  untimed_inner = inner.get();
  auto cb = outer->RegisterCallback(&CallSpinningInner);
  ASSERT_TRUE(cb.ok());
  absl::Status s = outer->Call(&OuterCallsBack, cb->get());
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_EQ(inner_code, absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(inner->last_fault()->what, HasSubstr("enclosing call"));
}

long WaitForever() {
  volatile uint32_t word = 0;
  long r;
  do {
    register long r10 asm("r10") = 0;  // no timeout of its own
    asm volatile("syscall"
                 : "=a"(r)
                 : "a"(SYS_futex), "D"(&word), "S"(FUTEX_WAIT | FUTEX_PRIVATE_FLAG),
                   "d"(0), "r"(r10)
                 : "rcx", "r11", "memory");
  } while (true);
  return r;
}

TEST(TimeoutTest, DeadlineEndsABlockingEmulatedSyscall) {
  // Timer ticks land in the syscall's handler (host code), not in the
  // compartment: the wait itself must end at the deadline.
  auto box = MakeBox({.name = "sleeper",
                      .call_timeout = absl::Milliseconds(100),
                      .syscalls = SyscallPolicy().AllowFutex()});
  const absl::Time start = absl::Now();
  absl::Status s = box->Call(&WaitForever).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(TimeoutTest, TimersAreNotLeakedAndUntimedCallsMakeNone) {
  auto untimed = MakeBox({.name = "untimed"});
  auto timed = MakeBox({.name = "timed",
                        .call_timeout = absl::Milliseconds(20)});
  // The symbolizer keeps a few descriptors open once it has run.
  ASSERT_FALSE(untimed->Call(&ReadUnmapped).ok());
  ASSERT_TRUE(untimed->Reset().ok());
  const int timers = CountTimers();
  const int fds = CountFds();
  std::thread([&] {
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(untimed->Call(+[] {}).ok());
    EXPECT_EQ(CountTimers(), timers);  // no timeout, no timer
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(timed->Call(+[] {}).ok());
      ASSERT_EQ(timed->Call(&Spin, kForever).status().code(),
                absl::StatusCode::kDeadlineExceeded);
      ASSERT_TRUE(timed->Reset().ok());
    }
    EXPECT_EQ(CountTimers(), timers + 1);  // one per thread
  }).join();
  EXPECT_EQ(CountTimers(), timers);  // gone with the thread
  EXPECT_EQ(CountFds(), fds);
}

}  // namespace
}  // namespace mpkbox
