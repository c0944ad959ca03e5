// The host's pthread_create, interposed: every thread it starts tags its own
// stack with the trusted key before the host's start routine runs, so that
// compartments cannot read host frames (runtime/host_memory.h). Threads
// started before Runtime::Init are remembered and tagged by Init.
#include <alloca.h>
#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "runtime/host_memory.h"

namespace {

struct Start {
  void* (*routine)(void*);
  void* arg;
};

struct Forget {
  ~Forget() { mpkbox::internal::ForgetThisThreadStack(); }
};

void* StartThread(void* p) {
  const Start start = *static_cast<Start*>(p);
  free(p);
  const auto sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  const uintptr_t boundary = mpkbox::internal::ProtectThisThreadStack(sp);
  // Runs also when pthread_exit or cancellation unwinds this frame.
  Forget forget;
  if (boundary != 0) {
    // The routine's frames go below the boundary, on tagged pages; above
    // it stay this frame, glibc's start_thread, the TCB and static TLS.
    const auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    char* room = static_cast<char*>(alloca(here - boundary + 256));
    asm volatile("" : : "r"(room) : "memory");
  }
  return start.routine(start.arg);
}

}  // namespace

extern "C" {

// Referenced by the link options of mpkbox's CMake target, so that this
// object is always linked.
void mpkbox_override_threads() {}

int pthread_create(pthread_t* thread, const pthread_attr_t* attr,
                   void* (*routine)(void*), void* arg) {
  using CreateFn =
      int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static std::atomic<CreateFn> real{nullptr};
  if (real.load() == nullptr) {
    real.store(reinterpret_cast<CreateFn>(dlsym(RTLD_NEXT, "pthread_create")));
  }
  auto* start = static_cast<Start*>(malloc(sizeof(Start)));
  if (start == nullptr) return real.load()(thread, attr, routine, arg);
  *start = Start{routine, arg};
  const int err = real.load()(thread, attr, StartThread, start);
  if (err != 0) free(start);
  return err;
}

}  // extern "C"
