// The two jemalloc instances compartment heaps come from. jemalloc numbers
// its arenas with 12 bits (MALLOCX_ARENA: 4,095 indices) and every
// compartment heap is an arena of its own, so one instance holds at most
// 4,092 heaps next to the host's. The second is a private copy of Debian's
// libjemalloc_pic.a (CMakeLists.txt: every symbol local but the entry points
// below, renamed mpkbox_je2_*): its own arenas, tcaches, TLS, fork handlers
// and options. An arena index or tcache id means nothing to the other
// instance, and neither frees, sizes or resets the other's pointers.
#ifndef MPKBOX_ALLOCATOR_JEMALLOC_INSTANCE_H_
#define MPKBOX_ALLOCATOR_JEMALLOC_INSTANCE_H_

#include <cstddef>

namespace mpkbox::internal {

struct JemallocInstance {
  const char* name;  // for messages
  void* (*mallocx)(size_t size, int flags);
  void* (*rallocx)(void* p, size_t size, int flags);
  void (*dallocx)(void* p, int flags);
  void (*sdallocx)(void* p, size_t size, int flags);
  size_t (*sallocx)(const void* p, int flags);
  size_t (*nallocx)(size_t size, int flags);
  int (*mallctl)(const char* name, void* old, size_t* old_len, void* value,
                 size_t value_len);
};

// The process's jemalloc: the host heap, the ambient heap, and compartment
// heaps while it has arena indices left.
extern const JemallocInstance kSystemJemalloc;
// mpkbox's own copy: compartment heaps past the system one's indices.
extern const JemallocInstance kPrivateJemalloc;

// For tests: which instance compartment heaps created from now on try
// first (the heap tests run on the private one without 4,092 compartments
// ahead of them; kAlternate mixes the two among neighbours).
enum class JemallocPreference { kSystemFirst, kPrivateFirst, kAlternate };
void SetJemallocPreferenceForTesting(JemallocPreference preference);
// Whether the next heap tries the private instance first.
bool PrivateJemallocPreferred();

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_JEMALLOC_INSTANCE_H_
