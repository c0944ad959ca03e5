// Unwinding across the gate: a libunwind backtrace taken inside a compartment
// reaches the host caller, and one taken in a host callback reaches through
// the compartment frames to the same caller. (gdb: gdb_backtrace.cmake.)
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <sys/syscall.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/debugging/symbolize.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/syscall_dispatch.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace {

struct Trace {
  unw_word_t ips[32];
  int n = 0;
};
// Written from inside (the compartment is Ambient::kReadWrite): on a page
// that stays on key 0.
MPKBOX_COMPARTMENT_READABLE Trace trace;

// No heap, no C++: libunwind into a fixed buffer. Only addresses: naming
// them reads ELF files, which compartments may not open (the host does it).
void Collect() {
  unw_context_t ctx;
  unw_cursor_t cursor;
  unw_getcontext(&ctx);
  unw_init_local(&cursor, &ctx);
  trace.n = 0;
  do {
    unw_get_reg(&cursor, UNW_REG_IP, &trace.ips[trace.n]);
    ++trace.n;
  } while (trace.n < 32 && unw_step(&cursor) > 0);
}

std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (int i = 0; i < trace.n; ++i) {
    char name[256];
    // Return addresses point past their call.
    const void* pc = reinterpret_cast<const void*>(trace.ips[i] - (i > 0));
    names.push_back(absl::Symbolize(pc, name, sizeof(name)) ? name : "?");
  }
  return names;
}

// Index of the first frame named `name` at or after `from`, or -1.
int Find(const std::vector<std::string>& names, const std::string& name,
         int from = 0) {
  for (int i = from; i < static_cast<int>(names.size()); ++i) {
    if (names[i] == name) return i;
  }
  return -1;
}

std::string Join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += n + " <- ";
  return s;
}

}  // namespace

extern "C" {
__attribute__((noinline)) void mpkbox_test_inside() {
  Collect();
  asm volatile("");  // not a tail call
}
__attribute__((noinline)) void mpkbox_test_host_callback() {
  Collect();
  asm volatile("");
}
__attribute__((noinline)) void mpkbox_test_inside_calling(void (*cb)()) {
  cb();
  asm volatile("");
}
__attribute__((noinline)) bool mpkbox_test_host_caller(
    mpkbox::Compartment* box, void (*cb)()) {
  absl::Status s = cb == nullptr ? box->Call(&mpkbox_test_inside)
                                  : box->Call(&mpkbox_test_inside_calling, cb);
  asm volatile("");
  if (!s.ok()) fprintf(stderr, "%s\n", s.ToString().c_str());
  return s.ok();
}
}

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;

// In a fresh process whose threads run compartments without Syscall User
// Dispatch: libunwind's DWARF step fails inside a dispatched compartment
// (with only its lock's sigprocmask calls answered), then falls back to
// validating memory with pipe2/write, which no policy allows. Investigating
// that is open work; what this checks is the gate's CFI. The host's frames
// are on its stack, which compartments cannot read: the walk crosses the
// gate only where the host keeps its memory readable (switched here).
TEST(UnwindDeathTest, BacktraceInsideReachesTheHostCaller) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSyscallDispatchForTesting();
        unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_NONE);
        auto box = MakeBox({.name = "unwind", .ambient = Ambient::kReadWrite});
        internal::ExposeHostMemoryForTesting();
        mpkbox_test_host_caller(box.get(), nullptr);
        std::vector<std::string> names = Names();
        int inside = Find(names, "mpkbox_test_inside");
        int gate = Find(names, "mpkbox_gate_enter", inside);
        int caller = Find(names, "mpkbox_test_host_caller", gate);
        fprintf(stderr, "%s\n", Join(names).c_str());
        _exit(inside == 1 && gate > inside && caller > gate ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// With the host's stacks closed the walk stops at the gate, and the call
// goes on.
TEST(UnwindDeathTest, BacktraceInsideStopsAtTheGateWithHostStacksClosed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSyscallDispatchForTesting();
        unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_NONE);
        auto box = MakeBox({.name = "unwind", .ambient = Ambient::kReadWrite});
        const bool ok = mpkbox_test_host_caller(box.get(), nullptr);
        std::vector<std::string> names = Names();
        int inside = Find(names, "mpkbox_test_inside");
        int caller = Find(names, "mpkbox_test_host_caller", inside);
        fprintf(stderr, "%s\n", Join(names).c_str());
        _exit(ok && inside == 1 && caller < 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(UnwindTest, BacktraceInCallbackReachesThroughTheCompartment) {
  auto box = MakeBox({.name = "unwind", .ambient = Ambient::kReadWrite});
  auto cb = box->RegisterCallback(&mpkbox_test_host_callback);
  ASSERT_TRUE(cb.ok());
  ASSERT_TRUE(mpkbox_test_host_caller(box.get(), cb->get()));
  std::vector<std::string> names = Names();
  int callback = Find(names, "mpkbox_test_host_callback");
  int entry = Find(names, "mpkbox_callback_entry", callback);
  int inside = Find(names, "mpkbox_test_inside_calling", entry);
  int gate = Find(names, "mpkbox_gate_enter", inside);
  int caller = Find(names, "mpkbox_test_host_caller", gate);
  EXPECT_EQ(callback, 1) << Join(names);
  EXPECT_GT(entry, callback) << Join(names);
  EXPECT_GT(inside, entry) << Join(names);
  EXPECT_GT(gate, inside) << Join(names);
  EXPECT_GT(caller, gate) << Join(names);
}

}  // namespace
}  // namespace mpkbox
