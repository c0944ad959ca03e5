// Reset of loaded objects (loader attacks: loader_attack_util.h): fresh data
// and constructors run again at the same addresses, also after a faulting
// constructor and after a failed Load.
#include <cstdint>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

TEST(LoaderAttackTest, ResetRestoresPluginDataAndRerunsConstructors) {
  auto box = MakeBox({.name = "reset"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto get = box->Lookup<int()>("la_get_counter");
  auto bump = box->Lookup<int()>("la_bump_counter");
  auto runs = box->Lookup<int()>("la_ctor_count");
  auto counter = box->Lookup<int>("la_counter");
  ASSERT_TRUE(get.ok() && bump.ok() && runs.ok() && counter.ok());
  EXPECT_EQ(Value(box->Call(*runs)), 1);
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  EXPECT_EQ(Value(box->Call(*bump)), 43);
  ASSERT_TRUE(box->Reset().ok());
  // Same addresses, fresh data, constructor run once more on fresh .bss.
  EXPECT_EQ(Value(box->Call(*get)), 41);
  EXPECT_EQ(**counter, 41);
  EXPECT_EQ(Value(box->Call(*runs)), 1);
  auto again = box->Lookup<int()>("la_get_counter");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *get);
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*counter)), box->pkey());
  // After a fault too.
  auto write = box->Lookup<void()>("la_write_table");
  ASSERT_TRUE(write.ok());
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  EXPECT_EQ(box->Call(*write).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(box->Call(*get).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(*get)), 41);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(box->Reset().ok());
    EXPECT_EQ(Value(box->Call(*bump)), 42);
  }
}

// A constructor that faulted during Load: Reset, then the compartment loads
// and resets as usual.
TEST(LoaderAttackTest, ResetAfterAFaultingConstructorWorks) {
  auto box = MakeBox({.name = "reset-after-ctor"});
  g_attack_target = reinterpret_cast<uintptr_t>(&g_host_word);
  ASSERT_TRUE(box->Expose("la_target", &AttackTarget).ok());
  absl::Status bad = box->Load(Plugin("la_ctor_attack"));
  ASSERT_EQ(bad.code(), absl::StatusCode::kAborted) << bad;
  ASSERT_TRUE(box->Reset().ok());
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto bump = box->Lookup<int()>("la_bump_counter");
  ASSERT_TRUE(bump.ok());
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  absl::Status reset = box->Reset();
  EXPECT_TRUE(reset.ok()) << reset;
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  EXPECT_EQ(g_host_word, kHostWordValue);
}

// A failed Load must give back its image space, or Reset cannot reload.
TEST(LoaderAttackTest, ResetWorksAfterAFailedLoad) {
  auto box = MakeBox({.name = "reset-after-failure"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  // la_host.so imports host_log, which nobody exposed here.
  absl::Status failed = box->Load(Plugin("la_host"));
  ASSERT_EQ(failed.code(), absl::StatusCode::kNotFound) << failed;
  ASSERT_TRUE(box->Load(Plugin("la_imports")).ok());
  auto ok = box->Lookup<int(int)>("la_ok");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Value(box->Call(*ok, 1)), 3);
  absl::Status reset = box->Reset();
  EXPECT_TRUE(reset.ok()) << reset;
  EXPECT_EQ(Value(box->Call(*ok, 1)), 3);
}

}  // namespace
}  // namespace mpkbox::loader_attack
