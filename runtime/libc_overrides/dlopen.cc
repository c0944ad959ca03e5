// The host's dlopen, interposed: a library loaded after Init may bring
// privileged instructions of its own, which must be guarded before
// compartment code runs again (Call checks the guard epoch), and writable
// data, which goes on the trusted key like the rest of the host's.
#include <dlfcn.h>

#include <atomic>

#include "runtime/eager_binding.h"
#include "runtime/gadget_guard.h"
#include "runtime/host_memory.h"

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
  // Its writable data is the host's too.
  if (handle != nullptr && !(mode & RTLD_NOLOAD)) {
    mpkbox::internal::RefreshHostData();
  }
  return handle;
}

// An unloaded library's data is no host data any more.
int dlclose(void* handle) {
  using DlcloseFn = int (*)(void*);
  static std::atomic<DlcloseFn> real{nullptr};
  if (real.load() == nullptr) {
    real.store(reinterpret_cast<DlcloseFn>(dlsym(RTLD_NEXT, "dlclose")));
  }
  const int result = real.load()(handle);
  mpkbox::internal::RefreshHostData();
  return result;
}
}  // extern "C"
