// What the signal attack binaries share (signal_attack_util.h).
#include "tests/signal_attack_util.h"


#include <unistd.h>

#include <cstdio>
#include <vector>

#include "runtime/keys/pku.h"
#include "runtime/runtime_state.h"
#include "tests/test_util.h"
#include "trampolines/thread_block.h"

namespace mpkbox::signal_attack {

using ::mpkbox::testing::FindBytes;
using ::mpkbox::testing::kHostSecret;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

uintptr_t EntryWrpkru() {
  std::vector<uintptr_t> sites =
      FindBytes(mpkbox_signal_begin, mpkbox_signal_end, {0x0f, 0x01, 0xef});
  return sites.empty() ? 0 : sites[0];
}

void ExitAfter(int code, const absl::Status& s) {
  fprintf(stderr, "status: %s; host secret %d\n", s.ToString().c_str(),
          mpkbox_test_host_secret);
  fflush(stderr);
  _exit(code);
}

bool UsableAfterReset(Compartment* box) {
  if (!box->Reset().ok()) return false;
  absl::StatusOr<Tainted<int>> r = box->Call(+[] { return 41 + 1; });
  return r.ok() && r->UnverifiedValue("test") == 42 &&
         internal::ReadPkru() == 0;
}

SignalStack ThisThreadSignalStack() {
  internal::ThreadBlock* tb = internal::CurrentThreadBlock();
  if (tb == nullptr) return {};
  return {tb->sigstack_lo, tb->sigstack_hi};
}

void EnterOnce() {
  auto box = MakeBox({.name = "warm-up"});
  ASSERT_NE(box, nullptr);
  EXPECT_EQ(Value(box->Call(+[] { return 1; })), 1);
  ASSERT_NE(ThisThreadSignalStack().lo, 0u);
}

void SignalAttackTest::SetUp() {
  ASSERT_TRUE(Runtime::Init().ok());
  EnterOnce();
  mpkbox_test_host_secret = kHostSecret;
}

}  // namespace mpkbox::signal_attack
