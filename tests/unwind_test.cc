// Unwinding across the gate: a libunwind backtrace taken inside a compartment
// reaches the host caller, and one taken in a host callback reaches through
// the compartment frames to the same caller. (gdb: gdb_backtrace.cmake.)
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace {

struct Trace {
  char names[32][96];
  int n = 0;
};
Trace trace;  // written from inside: the compartment is Ambient::kReadWrite

// No heap, no C++: libunwind into a fixed buffer.
void Collect() {
  unw_context_t ctx;
  unw_cursor_t cursor;
  unw_getcontext(&ctx);
  unw_init_local(&cursor, &ctx);
  trace.n = 0;
  do {
    unw_word_t off;
    char* name = trace.names[trace.n];
    if (unw_get_proc_name(&cursor, name, sizeof(trace.names[0]), &off) != 0) {
      strcpy(name, "?");
    }
    ++trace.n;
  } while (trace.n < 32 && unw_step(&cursor) > 0);
}

std::vector<std::string> Names() {
  return std::vector<std::string>(trace.names, trace.names + trace.n);
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
  bool ok = cb == nullptr ? box->Call(&mpkbox_test_inside).ok()
                          : box->Call(&mpkbox_test_inside_calling, cb).ok();
  asm volatile("");
  return ok;
}
}

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;

TEST(UnwindTest, BacktraceInsideReachesTheHostCaller) {
  auto box = MakeBox({.name = "unwind", .ambient = Ambient::kReadWrite});
  ASSERT_TRUE(mpkbox_test_host_caller(box.get(), nullptr));
  std::vector<std::string> names = Names();
  int inside = Find(names, "mpkbox_test_inside");
  int gate = Find(names, "mpkbox_gate_enter", inside);
  int caller = Find(names, "mpkbox_test_host_caller", gate);
  EXPECT_EQ(inside, 1) << Join(names);  // frame 0 is Collect
  EXPECT_GT(gate, inside) << Join(names);
  EXPECT_GT(caller, gate) << Join(names);
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
