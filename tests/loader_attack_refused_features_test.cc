// Features the loader refuses (loader attacks: loader_attack_util.h): the
// TLS models it cannot back with compartment memory and IFUNC resolvers
// that choose code outside the compartment, named in the error, with
// nothing of the object left visible. What it supports of both:
// loader_features_test.cc.
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

// Initial-exec TLS addresses the host thread's static TLS through FS.
TEST(LoaderAttackTest, InitialExecTlsIsRefused) {
  auto box = MakeBox({.name = "tls-ie"});
  const std::string path = Plugin("la_tls");
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("initial-exec TLS model"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_EQ(box->Lookup<int()>("la_tls_next").status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

TEST(LoaderAttackTest, TlsDescriptorsAreRefused) {
  auto box = MakeBox({.name = "tlsdesc"});
  const std::string path = Plugin("la_tlsdesc");
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("R_X86_64_TLSDESC"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_EQ(box->Lookup<int()>("la_tlsdesc_next").status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

// A resolver's result is bound where loaded code calls: it must be the
// compartment's code, not the host's (here libc's abort).
TEST(LoaderAttackTest, IfuncResolvedOutsideTheCompartmentIsRefused) {
  auto box = MakeBox({.name = "ifunc-evil"});
  const std::string path = Plugin("la_ifunc_evil");
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("the resolver of IFUNC 'la_ifunc_evil' returned"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("not code of the compartment's objects"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_EQ(box->Lookup<int(int)>("la_ok").status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

}  // namespace
}  // namespace mpkbox::loader_attack
