// Callbacks: compartment code calls registered host functions, which run with
// host rights on the host stack; nesting across compartments and re-entry
// into the same compartment work.
#include <signal.h>
#include <unistd.h>

#include <cstdint>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "trampolines/thread_block.h"
#include "runtime/keys/pku.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

int host_counter = 0;

// The host side declares its parameters tainted: the compartment chose them.
int Describe(Tainted<int> n, Tainted<const char*> text) {
  ++host_counter;  // host memory: writable here
  int len = text.Verify([](const char* s) {
    int l = 0;
    while (s != nullptr && s[l] != 0 && l < 100) ++l;
    return l;
  });
  return n.UnverifiedValue("test arithmetic") * 1000 + len;
}

int CallDescribe(int (*cb)(int, const char*)) { return cb(7, "seven"); }

TEST(CallbackTest, CompartmentCallsHostWithTaintedArguments) {
  auto box = MakeBox({.name = "caller"});
  auto cb = box->RegisterCallback(&Describe);
  ASSERT_TRUE(cb.ok()) << cb.status();
  host_counter = 0;
  EXPECT_EQ(Value(box->Call(&CallDescribe, cb->get())), 7005);
  EXPECT_EQ(host_counter, 1);
}

uint32_t pkru_in_callback;
Compartment* probe_box;
bool on_compartment_stack;
void RecordRights() {
  pkru_in_callback = internal::ReadPkru();
  int local = 0;
  on_compartment_stack = probe_box->Contains(&local, sizeof(local));
}
void CallVoid(void (*cb)()) { cb(); }

TEST(CallbackTest, CallbackRunsWithHostRightsOnHostStack) {
  auto box = MakeBox({.name = "rights"});
  probe_box = box.get();
  auto cb = box->RegisterCallback(&RecordRights);
  ASSERT_TRUE(cb.ok());
  pkru_in_callback = 0xdead;
  ASSERT_TRUE(box->Call(&CallVoid, cb->get()).ok());
  EXPECT_EQ(pkru_in_callback, 0u);
  EXPECT_FALSE(on_compartment_stack);
}

double AllRegisters(long a, long b, long c, long d, long e, long f, double g,
                    double h, double i, double j, double k, double l,
                    double m, float n) {
  return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h + 9 * i +
         10 * j + 11 * k + 12 * l + 13 * m + 14 * n;
}
double ForwardAll(decltype(&AllRegisters) cb) {
  return cb(1, 2, 3, 4, 5, 6, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5f);
}
float HalfOf(Tainted<float> f) { return f.UnverifiedValue("test") / 2; }
float ForwardFloat(float (*cb)(float)) { return cb(5.0f); }

TEST(CallbackTest, EveryArgumentRegisterAndFloatResults) {
  auto box = MakeBox({.name = "regs"});
  auto all = box->RegisterCallback(&AllRegisters);
  auto half = box->RegisterCallback(&HalfOf);
  ASSERT_TRUE(all.ok() && half.ok());
  EXPECT_DOUBLE_EQ(Value(box->Call(&ForwardAll, all->get())),
                   AllRegisters(1, 2, 3, 4, 5, 6, 0.5, 1.5, 2.5, 3.5, 4.5,
                                5.5, 6.5, 7.5f));
  EXPECT_EQ(Value(box->Call(&ForwardFloat, half->get())), 2.5f);
}

// host -> A -> host callback -> B -> back, checking PKRU at each level.
Compartment* box_b;
uint32_t InsideB() { return internal::ReadPkru(); }
uint64_t FromAIntoB() {
  auto r = box_b->Call(&InsideB);
  if (!r.ok()) return 0;
  // Host again after B returned.
  return (uint64_t{r->UnverifiedValue("test")} << 32) | internal::ReadPkru();
}
uint64_t InsideA(uint64_t (*cb)()) {
  uint32_t before = internal::ReadPkru();
  uint64_t from_b = cb();
  uint32_t after = internal::ReadPkru();
  return before == after ? from_b : 0;
}

TEST(CallbackTest, NestedAcrossCompartments) {
  auto a = MakeBox({.name = "a"});
  auto b = MakeBox({.name = "b"});
  box_b = b.get();
  auto cb = a->RegisterCallback(&FromAIntoB);
  ASSERT_TRUE(cb.ok());
  uint64_t r = Value(a->Call(&InsideA, cb->get()));
  EXPECT_EQ(r >> 32, b->pkru());        // B ran with B's rights
  EXPECT_EQ(r & 0xffffffff, 0u);        // the callback with the host's
  EXPECT_EQ(internal::ReadPkru(), 0u);  // and the host is itself again
}

// host -> A -> host -> A -> ... : re-entry must not clobber live A frames.
// The stub travels as an argument: host globals are closed to compartments.
Compartment* reentrant_box;
int (*reenter_cb)(int);
using ReenterFn = int (*)(int);
int Reenter(ReenterFn cb, int depth);
int ReenterHost(Tainted<int> depth) {
  auto r = reentrant_box->Call(&Reenter, reenter_cb,
                               depth.UnverifiedValue("test") - 1);
  return r.ok() ? r->UnverifiedValue("test") : -1000000;
}
int Reenter(ReenterFn cb, int depth) {
  volatile int canary[64];
  for (int i = 0; i < 64; ++i) canary[i] = depth * 64 + i;
  int below = depth == 0 ? 0 : cb(depth);
  for (int i = 0; i < 64; ++i) {
    if (canary[i] != depth * 64 + i) return -1;  // a nested entry overwrote us
  }
  return below + 1;
}

TEST(CallbackTest, ReentryIntoTheSameCompartment) {
  auto box = MakeBox({.name = "reentrant"});
  reentrant_box = box.get();
  auto cb = box->RegisterCallback(&ReenterHost);
  ASSERT_TRUE(cb.ok());
  reenter_cb = cb->get();
  EXPECT_EQ(Value(box->Call(&Reenter, reenter_cb, 20)), 21);
  EXPECT_EQ(Value(box->Call(&Reenter, reenter_cb, 3)), 4);  // stack restored
}

absl::Status deepest_error;
int RecurseForever(ReenterFn cb, int depth);
int RecurseHost(Tainted<int> depth) {
  auto r = reentrant_box->Call(&RecurseForever, reenter_cb,
                               depth.UnverifiedValue("t"));
  if (!r.ok()) {
    deepest_error = r.status();
    return depth.UnverifiedValue("test");
  }
  return r->UnverifiedValue("test");
}
int RecurseForever(ReenterFn cb, int depth) { return cb(depth + 1); }

TEST(CallbackTest, NestingDepthIsBoundedWithAClearError) {
  auto box = MakeBox({.name = "bottomless"});
  reentrant_box = box.get();
  auto cb = box->RegisterCallback(&RecurseHost);
  ASSERT_TRUE(cb.ok());
  reenter_cb = cb->get();
  int depth = Value(box->Call(&RecurseForever, reenter_cb, 0));
  EXPECT_GT(depth, 20);
  EXPECT_EQ(deepest_error.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(deepest_error.message().find("bottomless"), std::string::npos)
      << deepest_error;
  EXPECT_EQ(internal::CurrentThreadBlock()->depth, 0u);
  EXPECT_EQ(Value(box->Call(+[] { return 3; })), 3);
}

int Seven() { return 7; }
int CallInt(int (*cb)()) { return cb(); }

TEST(CallbackTest, ReleasedCallbackIsRefused) {
  auto box = MakeBox({.name = "stale"});
  int (*stale)() = nullptr;
  {
    auto cb = box->RegisterCallback(&Seven);
    ASSERT_TRUE(cb.ok());
    stale = cb->get();
    EXPECT_EQ(Value(box->Call(&CallInt, stale)), 7);
  }
  absl::Status s = box->Call(&CallInt, stale).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_NE(s.message().find("forged registers"), absl::string_view::npos)
      << s;
}

TEST(CallbackTest, MovedCallbackKeepsItsSlot) {
  auto box = MakeBox({.name = "moved"});
  auto cb = box->RegisterCallback(&Seven);
  ASSERT_TRUE(cb.ok());
  Callback<int()> moved = std::move(*cb);
  EXPECT_EQ(cb->get(), nullptr);
  EXPECT_EQ(Value(box->Call(&CallInt, moved.get())), 7);
}

TEST(CallbackTest, NullHostFunctionIsRefused) {
  auto box = MakeBox({.name = "null"});
  int (*none)() = nullptr;
  auto cb = box->RegisterCallback(none);
  ASSERT_FALSE(cb.ok());
  EXPECT_EQ(cb.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mpkbox
