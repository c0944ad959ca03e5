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

// The ProtectionKey of the mapping holding `addr` (/proc/self/smaps), or -1
// if nothing maps it.
int PkeyOf(uintptr_t addr);

// Addresses in [begin, end) where `pattern` starts, at any byte offset.
std::vector<uintptr_t> FindBytes(const char* begin, const char* end,
                                 const std::vector<uint8_t>& pattern);

}  // namespace mpkbox::testing

#endif  // MPKBOX_TESTS_TEST_UTIL_H_
