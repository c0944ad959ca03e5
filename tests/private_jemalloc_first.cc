// Linked into test binaries that run on mpkbox's private jemalloc: every
// compartment heap they create comes from it (allocator/jemalloc_instance.h),
// as the heaps past the process's jemalloc's 4,092 arenas do. With
// MPKBOX_ALTERNATE_JEMALLOCS, heaps alternate between the two instances,
// the first on the private one (an attacker made first, its victim next).
#include "allocator/jemalloc_instance.h"

namespace {
[[maybe_unused]] const bool kPreferenceSet = [] {
  mpkbox::internal::SetJemallocPreferenceForTesting(
#ifdef MPKBOX_ALTERNATE_JEMALLOCS
      mpkbox::internal::JemallocPreference::kAlternate
#else
      mpkbox::internal::JemallocPreference::kPrivateFirst
#endif
  );
  return true;
}();
}  // namespace
