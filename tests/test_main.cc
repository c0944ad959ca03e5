// The main of every test binary. It asks Runtime::IsSupported() once; without
// PKU, every test that has not declared MPKBOX_TEST_RUNS_WITHOUT_PKU is
// skipped before its fixture is built, with one line that says why.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace mpkbox::testing {
namespace {

std::set<std::string>& RunsWithoutPku() {
  static auto* names = new std::set<std::string>;
  return *names;
}

// Records the skip in OnTestStart: gtest then runs neither SetUp nor the
// body, so nothing touches a compartment or PKRU.
class SkipWithoutPku : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& test) override {
    const std::string name =
        std::string(test.test_suite_name()) + "." + test.name();
    if (RunsWithoutPku().count(name) != 0) return;
    GTEST_SKIP() << "no PKU on this CPU or kernel (no pku/ospke in "
                    "/proc/cpuinfo): this test needs it. ./build.sh test "
                    "runs the suite in an emulated PKU guest instead.";
  }
};

}  // namespace

bool RegisterRunsWithoutPku(const char* suite, const char* name) {
  RunsWithoutPku().insert(std::string(suite) + "." + name);
  return true;
}

bool UnderEmulation() {
  const char* marker = std::getenv("MPKBOX_EMULATED_PKU");
  return marker != nullptr && marker[0] == '1';
}

}  // namespace mpkbox::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!mpkbox::Runtime::IsSupported()) {
    std::printf("mpkbox tests: no PKU here; only the %zu tests that need "
                "none run, the others are skipped\n",
                mpkbox::testing::RunsWithoutPku().size());
    ::testing::UnitTest::GetInstance()->listeners().Append(
        new mpkbox::testing::SkipWithoutPku);
  }
  return RUN_ALL_TESTS();
}
