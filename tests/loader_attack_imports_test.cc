// What loaded code may call (loader attacks: loader_attack_util.h): refused
// imports end the call naming the import and are never bound to libc, an
// exposed host function runs with host rights, a host symbol nobody exposed
// never runs, and getenv sees no environment.
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cstdint>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/keys/pku.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

// Defined here, visible to dlsym (--export-dynamic-symbol), never exposed to
// a compartment: la_not_exposed.so imports it.
extern "C" {
volatile int mpkbox_not_exposed_ran = 0;
volatile uint32_t mpkbox_not_exposed_pkru = 0xffffffff;
void mpkbox_not_exposed(void) {
  mpkbox_not_exposed_ran = 1;
  mpkbox_not_exposed_pkru = mpkbox::internal::ReadPkru();
}
}

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// dlsym on libm's handle also finds libc: refused names must not bind there.
TEST(LoaderAttackTest, RefusedImportsAreNotBoundToLibc) {
  auto box = MakeBox({.name = "bindings"});
  ASSERT_TRUE(box->Load(Plugin("la_imports")).ok());
  auto address = box->Lookup<void*(int)>("la_import_address");
  ASSERT_TRUE(address.ok());
  const char* names[] = {"fopen", "stderr", "pthread_create", "signal",
                         "sigaction"};
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(names[i]);
    void* bound = Value(box->Call(*address, i));
    Dl_info info{};
    const bool known = dladdr(bound, &info) != 0 && info.dli_fname != nullptr;
    EXPECT_FALSE(known && strstr(info.dli_fname, "libc.so") != nullptr)
        << names[i] << " is bound to " << bound << " in " << info.dli_fname
        << " (" << (info.dli_sname != nullptr ? info.dli_sname : "?") << ")";
  }
}

class RefusedImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    box_ = MakeBox({.name = "imports"});
    ASSERT_NE(box_, nullptr);
    absl::Status s = box_->Load(Plugin("la_imports"));
    ASSERT_TRUE(s.ok()) << s;
  }
  // A refused import ends the call with kPermissionDenied naming it.
  void ExpectRefused(const absl::Status& s, const std::string& symbol) {
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box_)));
    EXPECT_THAT(std::string(s.message()), HasSubstr("'" + symbol + "'"));
  }
  void ExpectStillWorks() {
    absl::Status reset = box_->Reset();
    ASSERT_TRUE(reset.ok()) << reset;
    auto ok = box_->Lookup<int(int)>("la_ok");
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(Value(box_->Call(*ok, 5)), 11);
  }
  std::unique_ptr<Compartment> box_;
};

// fopen is granted now (issue 15): it opens through the files policy,
// which grants nothing by default, so it fails cleanly and creates nothing.
TEST_F(RefusedImportTest, FopenFailsCleanly) {
  TempDir dir;
  const std::string out = dir.File("fopen.txt");
  auto fn = box_->Lookup<int(const char*)>("la_call_fopen");
  ASSERT_TRUE(fn.ok());
  absl::StatusOr<void*> arg = box_->Allocate(out.size() + 1);
  ASSERT_TRUE(arg.ok());
  memcpy(*arg, out.c_str(), out.size() + 1);
  EXPECT_EQ(Value(box_->Call(*fn, static_cast<const char*>(*arg))), 0);
  EXPECT_FALSE(FileExists(out));
  ExpectStillWorks();
}

// `stderr` inside is the compartment's own (issue 15): what loaded code
// writes to it goes to the compartment's sink, never the host's stderr.
TEST_F(RefusedImportTest, StderrIsTheCompartmentsOwn) {
  auto fn = box_->Lookup<int()>("la_read_stderr");
  ASSERT_TRUE(fn.ok());
  ::testing::internal::CaptureStderr();
  auto r = box_->Call(*fn);
  const std::string captured = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.ok()) << r.status();
  // The default sink: the host's stderr, after the compartment's name.
  EXPECT_THAT(captured,
              HasSubstr("[imports]! compartment on the host's stderr\n"));
  EXPECT_GT(fprintf(stderr, "[host stderr still works]\n"), 0);
  EXPECT_EQ(fflush(stderr), 0);
  ExpectStillWorks();
}

int CountThreads() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

// Refused with an errno it has (issue 15: failing is better than
// faulting), and no thread starts (compartment_libc/threads.cc).
TEST_F(RefusedImportTest, PthreadCreate) {
  auto fn = box_->Lookup<int()>("la_call_pthread_create");
  ASSERT_TRUE(fn.ok());
  const int threads = CountThreads();
  EXPECT_EQ(Value(box_->Call(*fn)), EAGAIN);
  EXPECT_EQ(CountThreads(), threads);
  EXPECT_EQ(box_->last_fault(), nullptr);
  ExpectStillWorks();
}

struct sigaction Disposition(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sigaction(sig, nullptr, &sa);
  return sa;
}

TEST_F(RefusedImportTest, Signal) {
  auto fn = box_->Lookup<long()>("la_call_signal");
  ASSERT_TRUE(fn.ok());
  const struct sigaction before = Disposition(SIGUSR1);
  auto r = box_->Call(*fn);
  ExpectRefused(r.status(), "signal");
  EXPECT_EQ(Disposition(SIGUSR1).sa_handler, before.sa_handler);
  ExpectStillWorks();
}

TEST_F(RefusedImportTest, Sigaction) {
  auto fn = box_->Lookup<int()>("la_call_sigaction");
  ASSERT_TRUE(fn.ok());
  const struct sigaction before = Disposition(SIGUSR2);
  auto r = box_->Call(*fn);
  ExpectRefused(r.status(), "sigaction");
  EXPECT_EQ(Disposition(SIGUSR2).sa_handler, before.sa_handler);
  ExpectStillWorks();
}

int g_host_log_calls = 0;
int g_host_log_a = 0, g_host_log_b = 0;
uint32_t g_host_log_pkru = 0xffffffff;
uint64_t* g_host_log_heap = nullptr;  // trusted key: compartments cannot

int HostLog(int a, int b) {
  ++g_host_log_calls;
  g_host_log_a = a;
  g_host_log_b = b;
  g_host_log_pkru = internal::ReadPkru();
  *g_host_log_heap += 1;  // host rights: the host heap is writable
  return a * b;
}

TEST(LoaderAttackTest, ExposedHostFunctionRunsWithHostRights) {
  g_host_log_heap = new uint64_t(100);
  auto box = MakeBox({.name = "exposed"});
  ASSERT_TRUE(box->Expose("host_log", &HostLog).ok());
  absl::Status s = box->Load(Plugin("la_host"));
  ASSERT_TRUE(s.ok()) << s;
  auto use = box->Lookup<int(int, int)>("la_use_host");
  ASSERT_TRUE(use.ok());
  EXPECT_EQ(Value(box->Call(*use, 6, 7)), 43);
  EXPECT_EQ(g_host_log_calls, 1);
  EXPECT_EQ(g_host_log_a, 6);
  EXPECT_EQ(g_host_log_b, 7);
  EXPECT_EQ(g_host_log_pkru, 0u)
      << "the host function ran with PKRU 0x" << std::hex << g_host_log_pkru;
  EXPECT_EQ(*g_host_log_heap, 101u);
  // Exposed bindings survive Reset (the object is reloaded and rebound).
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(*use, 2, 3)), 7);
  EXPECT_EQ(g_host_log_calls, 2);
  EXPECT_EQ(*g_host_log_heap, 102u);
  delete g_host_log_heap;
  g_host_log_heap = nullptr;
}

// Without Expose, host_log is not bound: the load fails naming it.
TEST(LoaderAttackTest, UnexposedHostLogFailsLoad) {
  const int calls_before = g_host_log_calls;
  auto box = MakeBox({.name = "unexposed-log"});
  absl::Status s = box->Load(Plugin("la_host"));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("'host_log"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_EQ(g_host_log_calls, calls_before);
  ExpectCompartmentWorks(box.get());
}

// mpkbox_not_exposed is defined (and visible to dlsym) in this binary but
// not exposed: the loader binds a refused-import trap (or refuses the
// load); either way the host function never runs with compartment rights.
TEST(LoaderAttackTest, HostSymbolNotExposedNeverRuns) {
  auto box = MakeBox({.name = "not-exposed"});
  absl::Status s = box->Load(Plugin("la_not_exposed"));
  if (s.ok()) {
    auto fn = box->Lookup<int()>("la_call_not_exposed");
    ASSERT_TRUE(fn.ok());
    s = box->Call(*fn).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  }
  EXPECT_THAT(std::string(s.message()), HasSubstr("'mpkbox_not_exposed'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_EQ(mpkbox_not_exposed_ran, 0);
  ExpectCompartmentWorks(box.get());
  EXPECT_EQ(mpkbox_not_exposed_ran, 0);
}

// After setenv, environ lives on the host heap: getenv inside would fault.
TEST(LoaderAttackTest, GetenvSeesNoEnvironment) {
  ASSERT_EQ(setenv("MPKBOX_LA_SETENV", "from-host", 1), 0);
  auto box = MakeBox({.name = "getenv"});
  ASSERT_TRUE(box->Load(Plugin("la_imports")).ok());
  auto get = box->Lookup<const char*(const char*)>("la_getenv");
  ASSERT_TRUE(get.ok());
  absl::StatusOr<Tainted<const char*>> r =
      box->Call(*get, static_cast<const char*>("MPKBOX_LA_SETENV"));
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) {
    EXPECT_EQ(Value(r), nullptr);
  }
  unsetenv("MPKBOX_LA_SETENV");
}

}  // namespace
}  // namespace mpkbox::loader_attack
