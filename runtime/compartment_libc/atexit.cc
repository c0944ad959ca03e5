// __cxa_atexit, atexit and __cxa_finalize for loaded code (loader/
// import_policy.cc binds them). glibc's would run the destructors at the
// process's exit with host rights; these keep them in the compartment's
// own list (allocator/heap_cache.h) and run them inside, when an object's
// destructors call __cxa_finalize(its __dso_handle): at the compartment's
// destruction and Reset (ElfLoader::RunFinalizers).
#include <algorithm>
#include <cstdint>

#include "allocator/heap_cache.h"
#include "allocator/inside.h"
#include "runtime/compartment_libc/compartment_libc.h"

namespace mi = mpkbox::internal;

namespace {

mi::AtexitList* List() {
  mi::SelectorPage* sel = mi::CompartmentThread();
  if (sel == nullptr) return nullptr;
  mi::HeapCache* cache = mi::EnsureCache(sel);
  return cache != nullptr ? cache->atexit : nullptr;
}

}  // namespace

extern "C" int mpkbox_compartment_cxa_atexit(void (*fn)(void*), void* arg,
                                             void* dso) {
  mi::AtexitList* list = List();
  if (list == nullptr) return -1;
  const uint32_t i = __atomic_fetch_add(&list->count, 1, __ATOMIC_RELAXED);
  if (i >= mi::kMaxAtexit) return -1;
  list->entries[i] = {fn, arg, dso};
  return 0;
}

extern "C" int mpkbox_compartment_atexit(void (*fn)()) {
  return mpkbox_compartment_cxa_atexit(reinterpret_cast<void (*)(void*)>(
                                           reinterpret_cast<uintptr_t>(fn)),
                                       nullptr, nullptr);
}

// Last registered, first run; each once. A null dso runs them all.
extern "C" void mpkbox_compartment_cxa_finalize(void* dso) {
  mi::AtexitList* list = List();
  if (list == nullptr) return;
  for (uint32_t i = std::min(__atomic_load_n(&list->count, __ATOMIC_RELAXED),
                             mi::kMaxAtexit);
       i > 0; --i) {
    mi::AtexitList::Entry& e = list->entries[i - 1];
    if (e.fn == nullptr || (dso != nullptr && e.dso != dso)) continue;
    void (*fn)(void*) = e.fn;
    e.fn = nullptr;
    fn(e.arg);
  }
}
