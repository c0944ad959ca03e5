// The host's dlopen, interposed: a library loaded after Init may bring
// privileged instructions of its own, which must be guarded before
// compartment code runs again (Call checks the guard epoch).
#include <dlfcn.h>

#include <atomic>

#include "runtime/eager_binding.h"
#include "runtime/gadget_guard.h"

extern "C" {

// Referenced by the link options of mpkbox's CMake target, so that this
// object is always linked.
void mpkbox_override_dlopen() {}

void* dlopen(const char* file, int mode) {
  using DlopenFn = void* (*)(const char*, int);
  static std::atomic<DlopenFn> real{nullptr};
  if (real.load() == nullptr) {
    real.store(reinterpret_cast<DlopenFn>(dlsym(RTLD_NEXT, "dlopen")));
  }
  void* handle = real.load()(file, mode);
  // RTLD_NOLOAD maps nothing new (and eager binding itself uses it).
  if (handle != nullptr && !(mode & RTLD_NOLOAD) &&
      mpkbox::internal::GadgetGuardsEnabled()) {
    mpkbox::internal::BindLoadedObjectsNow();
    mpkbox::internal::ScanProcessForGadgets().IgnoreError();  // Call reports
  }
  return handle;
}
}  // extern "C"
