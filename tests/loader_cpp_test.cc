// C++ inside (issue 14, item 2): a plugin built by the suite against
// Debian's libstdc++ and libgcc_s, both loaded as the compartment's own
// instances: std::string, std::vector, std::map, and exceptions thrown and
// caught in loaded code, against the same code run natively.
#include <dlfcn.h>
#include <string.h>

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::CollectingOutput;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

TEST(LoaderCppTest, ThrowsAndCatchesInsideLikeNative) {
  auto box = MakeBox({.name = "cpp"});
  absl::Status s = box->Load(CPP_PLUGIN);
  ASSERT_TRUE(s.ok()) << s;
  auto sum = box->Lookup<long(const char*)>("cpp_sum_words");
  ASSERT_TRUE(sum.ok()) << sum.status();
  const std::string text = "1 22 x 300 yy 1 4000";
  char* in = Buffer<char>(box.get(), text.size() + 1);
  memcpy(in, text.c_str(), text.size() + 1);
  absl::StatusOr<Tainted<long>> r =
      box->Call(*sum, static_cast<const char*>(in));
  ASSERT_TRUE(r.ok()) << r.status();

  void* native = dlopen(CPP_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(native, nullptr) << dlerror();
  auto native_sum =
      reinterpret_cast<long (*)(const char*)>(dlsym(native, "cpp_sum_words"));
  EXPECT_EQ(Value(r), native_sum(text.c_str()));
  EXPECT_EQ(Value(r), 600000 + 4324 * 1000 + 2);
}

// Its own libstdc++: another copy than the host's, in compartment memory.
TEST(LoaderCppTest, LibstdcxxIsTheCompartmentsOwn) {
  auto box = MakeBox({.name = "cpp-own"});
  ASSERT_TRUE(box->Load(CPP_PLUGIN).ok());
  auto throw_inside = box->Lookup<void()>("__cxa_throw");
  ASSERT_TRUE(throw_inside.ok()) << throw_inside.status();
  void* inside = reinterpret_cast<void*>(*throw_inside);
  EXPECT_TRUE(box->Contains(inside, 1));
  EXPECT_NE(inside, dlsym(RTLD_DEFAULT, "__cxa_throw"));
}

// libstdc++'s exception globals are thread-local (its PT_TLS): two threads
// throw and catch at once, each in its own block.
TEST(LoaderCppTest, ThreadsThrowAndCatchAtOnce) {
  auto box = MakeBox({.name = "cpp-threads"});
  ASSERT_TRUE(box->Load(CPP_PLUGIN).ok());
  auto sum = box->Lookup<long(const char*)>("cpp_sum_words");
  ASSERT_TRUE(sum.ok());
  const std::string text = "5 a 6 b 7 c";
  char* in = Buffer<char>(box.get(), text.size() + 1);
  memcpy(in, text.c_str(), text.size() + 1);
  auto run = [&] {
    for (int i = 0; i < 200; ++i) {
      ASSERT_EQ(Value(box->Call(*sum, static_cast<const char*>(in))),
                600000 + 18 * 1000 + 3);
    }
  };
  std::thread a(run), b(run);
  a.join();
  b.join();
}

// An exception nobody inside catches: the compartment's unwinder finds no
// frame description beyond its own objects, so std::terminate runs inside;
// its verbose handler's message reaches the compartment's stdio sink, then
// abort() ends the call as a contained fault. After Reset the plugin works
// again.
TEST(LoaderCppTest, EscapingExceptionIsAContainedFault) {
  std::vector<std::string> lines;
  auto box = MakeBox(CollectingOutput("cpp-escape", &lines));
  ASSERT_TRUE(box->Load(CPP_PLUGIN).ok());
  auto out = box->Lookup<int(int)>("cpp_throw_out");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Value(box->Call(*out, 0)), 0);
  absl::StatusOr<Tainted<int>> r = box->Call(*out, 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr(
                         "terminate called after throwing an instance of")));
  ASSERT_TRUE(box->Reset().ok());
  out = box->Lookup<int(int)>("cpp_throw_out");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Value(box->Call(*out, -3)), -3);
}

int destructor_calls = 0;
int destructor_names = 0;
void DestructorRan(int names) {
  ++destructor_calls;
  destructor_names = names;
}

// A destructor loaded code registered with __cxa_atexit runs inside (it
// reaches the host only through a callback, which the gate lets only
// compartment code call) at Reset and at the compartment's destruction.
TEST(LoaderCppTest, AtexitDestructorsRunInsideAtResetAndDestruction) {
  destructor_calls = 0;
  auto box = MakeBox({.name = "cpp-atexit"});
  ASSERT_TRUE(box->Load(CPP_PLUGIN).ok());
  auto hook = box->RegisterCallback(&DestructorRan);
  ASSERT_TRUE(hook.ok()) << hook.status();
  auto report = box->Lookup<void(void (*)(int), int)>("cpp_report_at_exit");
  ASSERT_TRUE(report.ok());
  ASSERT_TRUE(box->Call(*report, hook->get(), 3).ok());
  EXPECT_EQ(destructor_calls, 0);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(destructor_calls, 1);
  EXPECT_EQ(destructor_names, 3);
  // Reset rebuilt the object: a fresh static, registered again.
  report = box->Lookup<void(void (*)(int), int)>("cpp_report_at_exit");
  ASSERT_TRUE(report.ok());
  ASSERT_TRUE(box->Call(*report, hook->get(), 5).ok());
  box.reset();
  EXPECT_EQ(destructor_calls, 2);
  EXPECT_EQ(destructor_names, 5);
}

// libstdc++'s emergency pool (eh_alloc.cc: the arena
// __cxa_allocate_exception falls back on when malloc fails) is the
// compartment's own: the constructor of its libstdc++ allocated it inside,
// at Load, from the compartment's heap. libstdc++'s own __gnu_cxx::__freeres
// frees it, run inside: the free is checked against the heap's live
// allocations (a pointer anywhere else would fail the call as a bad free),
// and the heap's bytes in use drop by the arena's size. GCC 12's arena:
// 64 objects of 1 KiB and 64 dependent exceptions of 112 bytes.
TEST(LoaderCppTest, EmergencyPoolIsTheCompartmentsHeap) {
  auto box = MakeBox({.name = "cpp-pool"});
  ASSERT_TRUE(box->Load(CPP_PLUGIN).ok());
  auto freeres = box->Lookup<void()>("_ZN9__gnu_cxx9__freeresEv");
  ASSERT_TRUE(freeres.ok()) << freeres.status();
  const size_t before = box->stats().bytes_in_use;
  absl::Status s = box->Call(*freeres);
  ASSERT_TRUE(s.ok()) << s;
  const size_t after = box->stats().bytes_in_use;
  ASSERT_LE(after, before);
  EXPECT_GE(before - after, size_t{64 * 1024 + 64 * 112});
  // The arena is gone: a second call frees nothing.
  ASSERT_TRUE(box->Call(*freeres).ok());
  EXPECT_EQ(box->stats().bytes_in_use, after);
}

// With the heap exhausted from inside (malloc returns null), a throw
// inside takes its exception object from that pool, and the caught object
// lies in the compartment's memory. The pool's lock is a pthread mutex
// (issue 15's threads part).
TEST(LoaderCppTest, ThrowUnderHeapExhaustionUsesTheCompartmentsPool) {
  constexpr size_t kLimit = size_t{8} << 20;
  auto box = MakeBox({.name = "cpp-pool-throw", .heap_limit_bytes = kLimit});
  ASSERT_TRUE(box->Load(CPP_PLUGIN).ok());
  auto exhaust =
      box->Lookup<uintptr_t(long*)>("cpp_exception_under_exhaustion");
  ASSERT_TRUE(exhaust.ok()) << exhaust.status();
  long* held = Buffer<long>(box.get(), 1);
  absl::StatusOr<Tainted<uintptr_t>> r = box->Call(*exhaust, held);
  EXPECT_GT(box->stats().failed_allocations, 0u);
  ASSERT_TRUE(r.ok()) << r.status();
  const uintptr_t at = Value(r);
  ASSERT_NE(at, 0u) << "malloc inside never failed, or the throw freed "
                       "memory";
  EXPECT_GT(*held, static_cast<long>(kLimit / 2));
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(at), sizeof(int)))
      << std::hex << at;
  // The compartment works again after a Reset.
  ASSERT_TRUE(box->Reset().ok());
  auto sum = box->Lookup<long(const char*)>("cpp_sum_words");
  ASSERT_TRUE(sum.ok());
  char* in = Buffer<char>(box.get(), 8);
  memcpy(in, "7 x", 4);
  EXPECT_EQ(Value(box->Call(*sum, static_cast<const char*>(in))),
            200000 + 7 * 1000 + 1);
}

// std::cout is libstdc++'s stdio-backed stream: its set-up (a constructor,
// std::ios_base::Init) binds the compartment's own stdout, stderr and stdin
// (issue 15, stdio), and writes reach the compartment's sink. The same
// set-up also needs pthread_once and the C locale (issue 15's threads and
// locale parts).
TEST(LoaderCppTest, IostreamsReachTheSink) {
  std::vector<std::string> lines;
  auto box = MakeBox(CollectingOutput("cpp-iostream", &lines));
  ASSERT_TRUE(box->Load(CPP_IOSTREAM).ok());
  auto print = box->Lookup<int(int)>("cpp_print");
  ASSERT_TRUE(print.ok());
  EXPECT_EQ(Value(box->Call(*print, 5)), 5);
  EXPECT_THAT(lines, ::testing::ElementsAre("x = 5"));
}

}  // namespace
}  // namespace mpkbox
