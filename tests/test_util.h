// Helpers shared by the test suites.
#ifndef MPKBOX_TESTS_TEST_UTIL_H_
#define MPKBOX_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include "mpkbox/mpkbox.h"

namespace mpkbox::testing {

// Without PKU (test_main.cc), every test is skipped except those declared,
// after their definition, with MPKBOX_TEST_RUNS_WITHOUT_PKU(Suite, Name).
bool RegisterRunsWithoutPku(const char* suite, const char* name);
#define MPKBOX_TEST_RUNS_WITHOUT_PKU(suite, name)              \
  [[maybe_unused]] static const bool suite##_##name##_no_pku = \
      ::mpkbox::testing::RegisterRunsWithoutPku(#suite, #name)

// True in the emulated PKU guest (tests/guest/pku_guest.sh sets
// MPKBOX_EMULATED_PKU=1), where timings mean nothing.
bool UnderEmulation();
#define MPKBOX_SKIP_UNDER_EMULATION(why)                             \
  do {                                                               \
    if (::mpkbox::testing::UnderEmulation()) {                       \
      GTEST_SKIP() << "under emulation (MPKBOX_EMULATED_PKU): " why; \
    }                                                                \
  } while (0)

// Creates a compartment or fails the test.
inline std::unique_ptr<Compartment> MakeBox(CompartmentOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Compartment>> box =
      Compartment::Create(std::move(options));
  EXPECT_TRUE(box.ok()) << box.status();
  return box.ok() ? std::move(*box) : nullptr;
}

// The raw value of a successful call, or fails the test.
template <typename T>
T Value(const absl::StatusOr<Tainted<T>>& r) {
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->UnverifiedValue("test inspects the raw result") : T{};
}

// Number of lines in /proc/self/maps.
int CountMappings();

// A copy of /proc/self/maps taken without allocating, so that taking one
// does not itself grow the heap it measures. Lives on the caller's stack.
class MappingsSnapshot {
 public:
  MappingsSnapshot();
  int count() const;
  // The lines added since `before` and those gone, for a failure message.
  std::string DiffFrom(const MappingsSnapshot& before) const;

 private:
  char text_[256 << 10];
  size_t size_ = 0;
};

// The ProtectionKey of the mapping holding `addr` (/proc/self/smaps), or -1
// if nothing maps it.
int PkeyOf(uintptr_t addr);

// Addresses in [begin, end) where `pattern` starts, at any byte offset.
std::vector<uintptr_t> FindBytes(const char* begin, const char* end,
                                 const std::vector<uint8_t>& pattern);

}  // namespace mpkbox::testing

#endif  // MPKBOX_TESTS_TEST_UTIL_H_
