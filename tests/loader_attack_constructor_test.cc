// Hostile constructors (loader attacks: loader_attack_util.h): a constructor
// that writes host memory or calls a refused import fails the Load, and
// changes nothing of the host.
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// While it lives, `environ` is an array of this binary's key-0 data holding
// NAME=VALUE only: compartment code reads the environment with getenv, and
// setenv would put it on the host heap, which compartments cannot read
// (GetenvSeesNoEnvironment).
char g_env_entry[256];
char* g_env_array[2];
class KeyZeroEnvironment {
 public:
  KeyZeroEnvironment(const std::string& name, const std::string& value)
      : saved_(environ) {
    snprintf(g_env_entry, sizeof(g_env_entry), "%s=%s", name.c_str(),
             value.c_str());
    g_env_array[0] = g_env_entry;
    g_env_array[1] = nullptr;
    environ = g_env_array;
  }
  ~KeyZeroEnvironment() { environ = saved_; }

 private:
  char** saved_;
};

// The constructor runs inside the compartment during Load and writes the
// host address la_target gives it: a key-0 global, then a host-heap word
// (trusted key). Load fails with kAborted naming the
// compartment and the file; the host's memory is unchanged.
TEST(LoaderAttackTest, ConstructorWritingHostMemoryFailsLoad) {
  auto* heap_word = new uint64_t(kHostWordValue);
  struct Target {
    const char* what;
    volatile uint64_t* address;
  } targets[] = {{"key-0 global", &g_host_word}, {"host heap", heap_word}};
  for (const Target& t : targets) {
    SCOPED_TRACE(t.what);
    auto box = MakeBox({.name = "ctor-attack"});
    ASSERT_NE(box, nullptr);
    const std::string path = Plugin("la_ctor_attack");
    g_attack_target = reinterpret_cast<uintptr_t>(t.address);
    ASSERT_TRUE(box->Expose("la_target", &AttackTarget).ok());
    absl::Status s = box->Load(path);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
    EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
    EXPECT_THAT(std::string(s.message()), HasSubstr("constructor"));
    EXPECT_EQ(*t.address, kHostWordValue);
    const FaultReport* f = box->last_fault();
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->signal, SIGSEGV);
    EXPECT_EQ(f->code, SEGV_PKUERR) << f->what;  // compartment rights
    EXPECT_EQ(f->address, reinterpret_cast<uintptr_t>(t.address));
    EXPECT_EQ(f->compartment, box->name());
    // Nothing of the failed object is visible.
    EXPECT_EQ(box->Lookup<int(int)>("la_ok").status().code(),
              absl::StatusCode::kNotFound);
    ExpectCompartmentWorks(box.get());
  }
  EXPECT_EQ(g_host_word, kHostWordValue);
  EXPECT_EQ(*heap_word, kHostWordValue);
  delete heap_word;
  ExpectProcessWorks();
}

// Control for the test above: without a target the constructor does
// nothing and the plugin loads and works.
TEST(LoaderAttackTest, ConstructorWithoutTargetLoads) {
  auto box = MakeBox({.name = "ctor-benign"});
  g_attack_target = 0;
  ASSERT_TRUE(box->Expose("la_target", &AttackTarget).ok());
  absl::Status s = box->Load(Plugin("la_ctor_attack"));
  ASSERT_TRUE(s.ok()) << s;
  auto ok = box->Lookup<int(int)>("la_ok");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Value(box->Call(*ok, 4)), 9);
}

// A constructor calling fopen (granted nothing: NULL, no file appears),
// then sigaction, a refused import: Load fails with kPermissionDenied naming
// the import. A refused import must trap, not run libc's sigaction with
// compartment rights.
TEST(LoaderAttackTest, ConstructorCallingRefusedImportFailsLoad) {
  TempDir dir;
  const std::string out = dir.File("from_ctor.txt");
  auto box = MakeBox({.name = "ctor-import"});
  const std::string path = Plugin("la_ctor_import");
  absl::Status s;
  {
    KeyZeroEnvironment env("MPKBOX_TEST_FILE", out);
    s = box->Load(path);
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'sigaction'"));
  EXPECT_FALSE(FileExists(out));
  ExpectCompartmentWorks(box.get());
  ExpectProcessWorks();
}

}  // namespace
}  // namespace mpkbox::loader_attack
