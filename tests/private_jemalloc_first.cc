// Linked into test binaries that run on mpkbox's private jemalloc: every
// compartment heap they create comes from it (allocator/jemalloc_instance.h),
// as the heaps past the process's jemalloc's 4,092 arenas do.
#include "allocator/jemalloc_instance.h"

namespace {
[[maybe_unused]] const bool kPrivateFirst = [] {
  mpkbox::internal::PreferPrivateJemallocForTesting(true);
  return true;
}();
}  // namespace
