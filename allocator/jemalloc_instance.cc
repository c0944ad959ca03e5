#include "allocator/jemalloc_instance.h"

#include <jemalloc/jemalloc.h>

#include <atomic>

// The private copy's entry points (CMakeLists.txt renames them).
extern "C" {
void* mpkbox_je2_mallocx(size_t size, int flags);
void* mpkbox_je2_rallocx(void* p, size_t size, int flags);
void mpkbox_je2_dallocx(void* p, int flags);
void mpkbox_je2_sdallocx(void* p, size_t size, int flags);
size_t mpkbox_je2_sallocx(const void* p, int flags);
size_t mpkbox_je2_nallocx(size_t size, int flags);
int mpkbox_je2_mallctl(const char* name, void* old, size_t* old_len,
                       void* value, size_t value_len);
// The private copy's malloc_conf (renamed too): the host's options
// (host_heap.cc says why), and no sbrk, which the process's jemalloc may use.
// Compartment heaps are arenas with mpkbox's extent hooks; arena 0 and a
// thread's automatic tcache are never asked for (every call names an arena
// and a tcache, or none).
extern const char* mpkbox_je2_malloc_conf;
const char* mpkbox_je2_malloc_conf =
    "retain:false,narenas:1,oversize_threshold:0,thp:never,dss:disabled,"
    "background_thread:false";
}

namespace mpkbox::internal {

// Both tables name the same entry points; the private ones carry a prefix.
#define MPKBOX_JEMALLOC_ENTRIES(prefix)                                   \
  .mallocx = prefix##mallocx, .rallocx = prefix##rallocx,                 \
  .dallocx = prefix##dallocx, .sdallocx = prefix##sdallocx,               \
  .sallocx = prefix##sallocx, .nallocx = prefix##nallocx,                 \
  .mallctl = prefix##mallctl

const JemallocInstance kSystemJemalloc = {.name = "jemalloc",
                                          MPKBOX_JEMALLOC_ENTRIES()};
const JemallocInstance kPrivateJemalloc = {
    .name = "mpkbox's private jemalloc", MPKBOX_JEMALLOC_ENTRIES(mpkbox_je2_)};

#undef MPKBOX_JEMALLOC_ENTRIES

namespace {
constinit std::atomic<JemallocPreference> g_preference{
    JemallocPreference::kSystemFirst};
constinit std::atomic<unsigned> g_alternation{0};
}  // namespace

void SetJemallocPreferenceForTesting(JemallocPreference preference) {
  g_preference.store(preference, std::memory_order_relaxed);
}

bool PrivateJemallocPreferred() {
  switch (g_preference.load(std::memory_order_relaxed)) {
    case JemallocPreference::kSystemFirst: return false;
    case JemallocPreference::kPrivateFirst: return true;
    case JemallocPreference::kAlternate:
      return g_alternation.fetch_add(1, std::memory_order_relaxed) % 2 == 0;
  }
  return false;
}

}  // namespace mpkbox::internal
