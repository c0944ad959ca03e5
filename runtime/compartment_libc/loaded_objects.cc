// _dl_find_object and dl_iterate_phdr for loaded code (loader/
// import_policy.cc binds them): libgcc's unwinder finds the frame
// descriptions of a throwing frame through them, and ld.so's answer would
// be the host's objects. These run with compartment rights and answer from
// the list the runtime keeps in the thread's HeapCache
// (allocator/loaded_objects.cc).
#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cstdint>

#include "allocator/heap_cache.h"
#include "allocator/inside.h"
#include "runtime/compartment_libc/compartment_libc.h"

namespace mi = mpkbox::internal;

namespace {

// The thread's list in the running compartment, with its checked length.
const mi::LoadedObjectInfo* Objects(uint64_t* count) {
  *count = 0;
  mi::SelectorPage* sel = mi::CompartmentThread();
  if (sel == nullptr) return nullptr;
  mi::HeapCache* cache = mi::EnsureCache(sel);
  if (cache == nullptr) return nullptr;
  *count = std::min<uint64_t>(cache->num_objects, mi::kMaxLoadedObjects);
  return cache->objects;
}

}  // namespace

extern "C" int mpkbox_compartment_dl_find_object(void* pc,
                                                 struct dl_find_object* out) {
  const auto address = reinterpret_cast<uintptr_t>(pc);
  uint64_t count;
  const mi::LoadedObjectInfo* objects = Objects(&count);
  for (uint64_t i = 0; i < count; ++i) {
    const mi::LoadedObjectInfo& o = objects[i];
    if (address < o.start || address >= o.end) continue;
    *out = {};
    out->dlfo_map_start = reinterpret_cast<void*>(o.start);
    out->dlfo_map_end = reinterpret_cast<void*>(o.end);
    out->dlfo_eh_frame = reinterpret_cast<void*>(o.eh_frame);
    return 0;
  }
  return -1;
}

extern "C" int mpkbox_compartment_dl_iterate_phdr(
    int (*callback)(struct dl_phdr_info*, size_t, void*), void* data) {
  uint64_t count;
  const mi::LoadedObjectInfo* objects = Objects(&count);
  for (uint64_t i = 0; i < count; ++i) {
    struct dl_phdr_info info = {};
    info.dlpi_addr = objects[i].base;
    info.dlpi_name = "";
    info.dlpi_phdr = reinterpret_cast<const ElfW(Phdr)*>(objects[i].phdr);
    info.dlpi_phnum = static_cast<ElfW(Half)>(objects[i].phnum);
    info.dlpi_adds = count;
    if (int r = callback(&info, sizeof(info), data); r != 0) return r;
  }
  return 0;
}
