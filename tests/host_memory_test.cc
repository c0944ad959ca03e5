// The host's stacks and writable data carry the trusted key: compartment code
// that reads a secret on the caller's stack, in a host global, or on another
// host thread's stack (started before or after Runtime::Init) faults, the
// call ends with kAborted naming the kind of memory and the address, and the
// host goes on. With the protection switched off (a child process) the same
// reads return the secret. Call refuses pointer arguments into host memory,
// and callbacks' pointer results, with kInvalidArgument before any fault.
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "runtime/keys/pku.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

constexpr long kSecret = 0x5ec7e75ec7e7;

volatile long host_secret = kSecret;  // .data of the test program

// The attack: the compartment was told (or guessed) an address and reads
// it. An integer, so that Call's own check of pointer arguments does not
// stop it first.
long ReadAt(uintptr_t address) {
  return *reinterpret_cast<volatile long*>(address);
}

std::string Hex(uintptr_t a) { return absl::StrFormat("0x%x", a); }

// The read was stopped: kAborted naming the kind of memory and the address,
// the secret unchanged, and the compartment works after Reset.
void ExpectReadStopped(Compartment* box, uintptr_t address, const char* kind,
                       volatile long* secret) {
  absl::StatusOr<Tainted<long>> r = box->Call(&ReadAt, address);
  ASSERT_FALSE(r.ok()) << "read 0x" << std::hex
                       << r->UnverifiedValue("test reports the leak");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(kind));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(Hex(address)));
  const FaultReport* f = box->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->code, SEGV_PKUERR) << f->what;
  EXPECT_EQ(f->pkey, internal::Keys().trusted) << f->what;
  EXPECT_THAT(f->key_owner, HasSubstr(kind));
  EXPECT_EQ(*secret, kSecret);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

// A thread that keeps a secret on its stack until told to end.
struct SecretThread {
  std::atomic<uintptr_t> address{0};
  std::atomic<bool> done{false};
  static void* Run(void* arg) {
    auto* self = static_cast<SecretThread*>(arg);
    volatile long secret = kSecret;
    self->address.store(reinterpret_cast<uintptr_t>(&secret));
    while (!self->done.load()) usleep(1000);
    return reinterpret_cast<void*>(secret);
  }
};

// Started by a static constructor: before main, so before Runtime::Init.
SecretThread* PreInitThread() {
  static SecretThread* t = [] {
    auto* st = new SecretThread;
    pthread_t thread;
    if (pthread_create(&thread, nullptr, &SecretThread::Run, st) == 0) {
      pthread_detach(thread);
    }
    return st;
  }();
  return t;
}
[[maybe_unused]] const SecretThread* const started_before_init =
    PreInitThread();

uintptr_t WaitForAddress(SecretThread* t) {
  while (t->address.load() == 0) usleep(1000);
  return t->address.load();
}

TEST(HostMemoryTest, ReadOfCallersStackFaults) {
  auto box = MakeBox({.name = "stack-reader"});
  volatile long secret = kSecret;
  ExpectReadStopped(box.get(), reinterpret_cast<uintptr_t>(&secret),
                    "host stack", &secret);
}

TEST(HostMemoryTest, ReadOfHostGlobalFaults) {
  auto box = MakeBox({.name = "global-reader"});
  ExpectReadStopped(box.get(), reinterpret_cast<uintptr_t>(&host_secret),
                    "host data", &host_secret);
}

TEST(HostMemoryTest, ReadOfPreInitThreadsStackFaults) {
  SecretThread* t = PreInitThread();
  const uintptr_t address = WaitForAddress(t);
  auto box = MakeBox({.name = "preinit-reader"});  // Init runs here
  ExpectReadStopped(box.get(), address, "host stack",
                    reinterpret_cast<volatile long*>(address));
}

TEST(HostMemoryTest, ReadOfPostInitThreadsStackFaults) {
  auto box = MakeBox({.name = "thread-reader"});
  SecretThread t;
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, nullptr, &SecretThread::Run, &t), 0);
  const uintptr_t address = WaitForAddress(&t);
  ExpectReadStopped(box.get(), address, "host stack",
                    reinterpret_cast<volatile long*>(address));
  t.done.store(true);
  void* result = nullptr;
  pthread_join(thread, &result);
  EXPECT_EQ(reinterpret_cast<long>(result), kSecret);
}

// A thread started after Init enters a compartment itself: its own frames
// are closed to the compartment too, and it keeps working.
TEST(HostMemoryTest, ThreadsOwnFramesAreClosedToItsCompartment) {
  auto box = MakeBox({.name = "own-thread"});
  std::thread worker([&] {
    volatile long secret = kSecret;
    ExpectReadStopped(box.get(), reinterpret_cast<uintptr_t>(&secret),
                      "host stack", &secret);
  });
  worker.join();
}

// Pages the main stack grows by after Init keep the trusted key.
int __attribute__((noinline)) DeepStackKey(int depth, uintptr_t* deepest) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(depth);
  if (depth == 0) {
    *deepest = reinterpret_cast<uintptr_t>(&frame[0]);
    return PkeyOfAddress(*deepest) + frame[0];
  }
  return DeepStackKey(depth - 1, deepest) + frame[0] - frame[0];
}

TEST(HostMemoryTest, MainStackGrownAfterInitKeepsTheKey) {
  auto box = MakeBox({.name = "growth"});
  // 2 MiB below here: far beyond what the test has used so far.
  uintptr_t deepest = 0;
  EXPECT_EQ(DeepStackKey(512, &deepest), internal::Keys().trusted);
  ExpectReadStopped(box.get(), deepest, "host stack",
                    const_cast<volatile long*>(&host_secret));
}

// A library loaded after Init gets its writable data tagged too.
TEST(HostMemoryTest, DataOfLibraryLoadedLaterIsTagged) {
  auto box = MakeBox({.name = "dlopen"});
  void* lib = dlopen(HOST_DATA_LIB, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  using AddressFn = volatile long* (*)();
  auto address_of =
      reinterpret_cast<AddressFn>(dlsym(lib, "host_data_lib_secret_address"));
  ASSERT_NE(address_of, nullptr);
  volatile long* secret = address_of();
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(secret)),
            internal::Keys().trusted);
  ExpectReadStopped(box.get(), reinterpret_cast<uintptr_t>(secret), "host data",
                    secret);
  dlclose(lib);
}

// In a child: reads the secret on this stack, in a host global, on a
// pre-Init and on a post-Init thread's stack, and exits with how many
// reads returned it (the host's copies checked unchanged: else 100).
[[noreturn]] void ReadSecretsInChild(Compartment* box, uintptr_t pre_address,
                                     bool expose) {
  if (expose) internal::ExposeHostMemoryForTesting();
  volatile long secret = kSecret;
  SecretThread post;
  pthread_t thread;
  if (pthread_create(&thread, nullptr, &SecretThread::Run, &post) != 0) {
    _exit(101);
  }
  const uintptr_t post_address = WaitForAddress(&post);
  int leaked = 0;
  for (uintptr_t a :
       {reinterpret_cast<uintptr_t>(&secret),
        reinterpret_cast<uintptr_t>(&host_secret), pre_address, post_address}) {
    absl::StatusOr<Tainted<long>> r = box->Call(&ReadAt, a);
    if (r.ok() && r->UnverifiedValue("test") == kSecret) ++leaked;
    if (!r.ok() && r.status().code() != absl::StatusCode::kAborted) _exit(102);
    if (!box->Reset().ok()) _exit(103);
  }
  const bool intact = secret == kSecret && host_secret == kSecret &&
                      *reinterpret_cast<volatile long*>(pre_address) == kSecret;
  _exit(intact ? leaked : 100);
}

// The four reads get the secret out with the protection switched off (a
// child: the switch cannot be undone), and none does with it on.
class HostMemorySwitchDeathTest : public ::testing::TestWithParam<bool> {};

TEST_P(HostMemorySwitchDeathTest, ReadsSucceedOnlyWithoutProtection) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const bool expose = GetParam();
  const uintptr_t pre_address = WaitForAddress(PreInitThread());
  auto box = MakeBox({.name = expose ? "unprotected" : "protected"});
  EXPECT_EXIT(ReadSecretsInChild(box.get(), pre_address, expose),
              ::testing::ExitedWithCode(expose ? 4 : 0), "");
}

INSTANTIATE_TEST_SUITE_P(OffAndOn, HostMemorySwitchDeathTest,
                         ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "SwitchedOff" : "On";
                         });

// RuntimeOptions::host_memory_readable: the host's explicit choice of the
// old behaviour (a fresh child, so that this Init is the first).
TEST(HostMemoryDeathTest, ReadableOptionKeepsHostMemoryOnKeyZero) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        if (!Runtime::Init({.host_memory_readable = true}).ok()) _exit(100);
        auto box = MakeBox({.name = "readable"});
        volatile long secret = kSecret;
        long leaked = 0;
        for (uintptr_t a : {reinterpret_cast<uintptr_t>(&secret),
                            reinterpret_cast<uintptr_t>(&host_secret)}) {
          absl::StatusOr<Tainted<long>> r = box->Call(&ReadAt, a);
          if (r.ok() && r->UnverifiedValue("test") == kSecret) ++leaked;
        }
        _exit(static_cast<int>(leaked));
      },
      ::testing::ExitedWithCode(2), "");
}

// glibc's own handlers (installed with its internal sigaction, behind
// mpkbox's back) run on host stacks too: set*id in a threaded process
// signals every thread (SIGSETXID), pthread_cancel the target (SIGCANCEL).
TEST(HostMemoryTest, GlibcInternalSignalsStillWork) {
  auto box = MakeBox({.name = "glibc-signals"});
  ASSERT_TRUE(box->Call(+[] {}).ok());
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    while (!stop.load()) usleep(1000);
  });
  EXPECT_EQ(setresuid(-1, getuid(), -1), 0);
  stop.store(true);
  worker.join();
  pthread_t sleeper;
  ASSERT_EQ(pthread_create(
                &sleeper, nullptr,
                +[](void*) -> void* {
                  for (;;) pause();
                },
                nullptr),
            0);
  usleep(10000);
  EXPECT_EQ(pthread_cancel(sleeper), 0);
  void* result = nullptr;
  EXPECT_EQ(pthread_join(sleeper, &result), 0);
  EXPECT_EQ(result, PTHREAD_CANCELED);
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

// A handler the host installs runs on a tagged host stack (behind mpkbox's
// entry, which takes host rights first), on the main thread and on one
// started after Init.
std::atomic<int> usr1_seen{0};
void OnUsr1(int) {
  volatile char frame[256];
  frame[0] = 1;
  usr1_seen.fetch_add(frame[0]);
}

TEST(HostMemoryTest, HostSignalHandlersRunOnTaggedStacks) {
  auto box = MakeBox({.name = "handlers"});
  struct sigaction sa {
  }, old{};
  sa.sa_handler = OnUsr1;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  usr1_seen = 0;
  raise(SIGUSR1);
  std::thread worker([] { raise(SIGUSR1); });
  worker.join();
  EXPECT_EQ(usr1_seen.load(), 2);
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

// A forked child keeps the keys: the read faults there too.
TEST(HostMemoryTest, ForkedChildKeepsTheProtection) {
  auto box = MakeBox({.name = "forked"});
  volatile long secret = kSecret;
  const auto address = reinterpret_cast<uintptr_t>(&secret);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    absl::StatusOr<Tainted<long>> r = box->Call(&ReadAt, address);
    _exit(!r.ok() && r.status().code() == absl::StatusCode::kAborted &&
                  r.status().message().find("host stack") != std::string::npos
              ? 0
              : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(secret, kSecret);
}

// ---- Call's check of pointer arguments --------------------------------------

long ReadPointer(int /*unused*/, const long* p) { return *p; }

void ExpectRefused(const absl::Status& s, const char* kind, int position,
                   const void* p) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  const std::string m(s.message());
  EXPECT_THAT(m, HasSubstr(kind));
  EXPECT_THAT(m, HasSubstr(absl::StrFormat("argument %d", position)));
  EXPECT_THAT(m, HasSubstr(Hex(reinterpret_cast<uintptr_t>(p))));
  EXPECT_THAT(m, HasSubstr("Allocate"));
}

TEST(HostPointerArgumentTest, StackGlobalAndHeapPointersAreRefused) {
  auto box = MakeBox({.name = "args"});
  long on_stack = kSecret;
  ExpectRefused(box->Call(&ReadPointer, 1, &on_stack).status(), "host stack", 2,
                &on_stack);
  const long* global = const_cast<const long*>(&host_secret);
  ExpectRefused(box->Call(&ReadPointer, 1, global).status(), "host data", 2,
                global);
  auto on_heap = std::make_unique<long>(kSecret);
  ExpectRefused(box->Call(&ReadPointer, 1, on_heap.get()).status(), "host heap",
                2, on_heap.get());
  // Refused before the gate: no fault, the compartment goes on.
  EXPECT_EQ(box->last_fault(), nullptr);
  absl::StatusOr<void*> mem = box->Allocate(sizeof(long));
  ASSERT_TRUE(mem.ok());
  *static_cast<long*>(*mem) = 42;
  EXPECT_EQ(Value(box->Call(&ReadPointer, 1, static_cast<long*>(*mem))), 42);
  // Read-only host memory and null are no host secrets.
  static const long kConstant = 7;
  EXPECT_EQ(Value(box->Call(&ReadPointer, 1, &kConstant)), 7);
  EXPECT_TRUE(box->Call(
                     +[](const char*, const long*) {}, "literal", nullptr)
                  .ok());
}

void TwoPointers(const long*, const long*) {}

TEST(HostPointerArgumentTest, NamesThePosition) {
  auto box = MakeBox({.name = "position"});
  absl::StatusOr<void*> mem = box->Allocate(sizeof(long));
  ASSERT_TRUE(mem.ok());
  long on_stack = 0;
  ExpectRefused(box->Call(&TwoPointers, &on_stack, static_cast<long*>(*mem)),
                "host stack", 1, &on_stack);
  ExpectRefused(box->Call(&TwoPointers, static_cast<long*>(*mem), &on_stack),
                "host stack", 2, &on_stack);
}

// ---- callbacks' pointer results ---------------------------------------------

long* leaked_pointer = nullptr;
long* GiveHostPointer() { return leaked_pointer; }

using Getter = long* (*)();
long CallAndRead(Getter get) { return *get(); }

TEST(HostPointerArgumentTest, CallbackReturningHostMemoryIsRefused) {
  auto box = MakeBox({.name = "callback"});
  auto cb = box->RegisterCallback(&GiveHostPointer);
  ASSERT_TRUE(cb.ok()) << cb.status();
  auto on_heap = std::make_unique<long>(kSecret);
  leaked_pointer = on_heap.get();
  absl::Status s = box->Call(&CallAndRead, cb->get()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("host heap"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(Hex(reinterpret_cast<uintptr_t>(on_heap.get()))));
  EXPECT_THAT(std::string(s.message()), HasSubstr("Allocate"));
  ASSERT_TRUE(box->Reset().ok());
  // Compartment memory passes.
  absl::StatusOr<void*> mem = box->Allocate(sizeof(long));
  ASSERT_TRUE(mem.ok());
  *static_cast<long*>(*mem) = 42;
  leaked_pointer = static_cast<long*>(*mem);
  EXPECT_EQ(Value(box->Call(&CallAndRead, cb->get())), 42);
  EXPECT_EQ(*on_heap, kSecret);
}

}  // namespace
}  // namespace mpkbox
