// Features the loader refuses (loader attacks: loader_attack_util.h):
// thread-local storage and IFUNC, named in the error, with nothing of the
// object left visible.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::testing::MakeBox;
using ::testing::HasSubstr;

TEST(LoaderAttackTest, ThreadLocalStorageIsRefused) {
  auto box = MakeBox({.name = "tls"});
  const std::string path = Plugin("la_tls");
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("thread-local storage"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_EQ(box->Lookup<int()>("la_tls_next").status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

TEST(LoaderAttackTest, IfuncIsRefused) {
  auto box = MakeBox({.name = "ifunc"});
  const std::string path = Plugin("la_ifunc");
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("IFUNC"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_EQ(box->Lookup<int(int)>("la_ifunc_caller").status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

// The contract refuses IFUNC definitions, not only relocations to them.
TEST(LoaderAttackTest, IfuncDefinitionAloneIsRefused) {
  auto box = MakeBox({.name = "ifunc-only"});
  absl::Status s = box->Load(Plugin("la_ifunc_only"));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("IFUNC"));
  EXPECT_EQ(box->Lookup<int(int)>("la_ifunc_only").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace mpkbox::loader_attack
