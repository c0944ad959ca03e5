// The bindings of the C runtime's plumbing: errno, thread-local storage,
// the unwinder's object lookup, longjmp, atexit, qsort and getenv. Each
// function is mpkbox's own (this directory, trampolines/), never glibc's.
#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {
namespace {

char* NoEnvironment(const char*) { return nullptr; }

}  // namespace

absl::Span<const LibcBinding> RuntimeLinkBindings() {
  static const LibcBinding kBindings[] = {
      {"__errno_location", LibcFn(&mpkbox_compartment_errno_location),
       "the thread's errno slot in its HeapCache: compartment memory"},
      {"__tls_get_addr", LibcFn(&mpkbox_compartment_tls_get_addr),
       "this thread's TLS block of a loaded module: compartment memory"},
      {"_dl_find_object", LibcFn(&mpkbox_compartment_dl_find_object),
       "reads the compartment's copy of its loaded objects (libgcc's "
       "unwinder)"},
      {"dl_iterate_phdr", LibcFn(&mpkbox_compartment_dl_iterate_phdr),
       "the compartment's loaded objects only, from its own memory"},
      {"longjmp", LibcFn(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU"},
      {"_longjmp", LibcFn(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU"},
      {"siglongjmp", LibcFn(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU or the mask"},
      {"__longjmp_chk", LibcFn(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU"},
      // The host's environment may live on its heap (after setenv), which
      // compartments cannot read.
      {"getenv", LibcFn(&NoEnvironment), "loaded code sees no environment"},
      {"secure_getenv", LibcFn(&NoEnvironment),
       "loaded code sees no environment"},
      {"qsort", LibcFn(&mpkbox_compartment_qsort),
       "a merge sort that writes only the array and its own stack"},
      {"qsort_r", LibcFn(&mpkbox_compartment_qsort_r),
       "a merge sort that writes only the array and its own stack"},
      {"__cxa_atexit", LibcFn(&mpkbox_compartment_cxa_atexit),
       "the compartment's own destructor list, run inside"},
      {"atexit", LibcFn(&mpkbox_compartment_atexit),
       "the compartment's own destructor list, run inside"},
      {"__cxa_finalize", LibcFn(&mpkbox_compartment_cxa_finalize),
       "runs the compartment's own destructor list, inside"},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
