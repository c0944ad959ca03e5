// The bindings of the C runtime's plumbing: errno, thread-local storage,
// the unwinder's object lookup, longjmp, atexit, qsort and getenv. Each
// function is mpkbox's own (this directory, trampolines/), never glibc's.
#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {
namespace {

char* NoEnvironment(const char*) { return nullptr; }

void* F(auto* fn) { return reinterpret_cast<void*>(fn); }

}  // namespace

absl::Span<const LibcBinding> RuntimeLinkBindings() {
  static const LibcBinding kBindings[] = {
      {"__errno_location", F(&mpkbox_compartment_errno_location),
       "the thread's errno slot in its HeapCache: compartment memory"},
      {"__tls_get_addr", F(&mpkbox_compartment_tls_get_addr),
       "this thread's TLS block of a loaded module: compartment memory"},
      {"_dl_find_object", F(&mpkbox_compartment_dl_find_object),
       "reads the compartment's copy of its loaded objects (libgcc's unwinder)"},
      {"dl_iterate_phdr", F(&mpkbox_compartment_dl_iterate_phdr),
       "the compartment's loaded objects only, from its own memory"},
      {"longjmp", F(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU"},
      {"_longjmp", F(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU"},
      {"siglongjmp", F(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU or the mask"},
      {"__longjmp_chk", F(&mpkbox_compartment_longjmp),
       "restores registers from the caller's buffer; never PKRU"},
      // The host's environment may live on its heap (after setenv), which
      // compartments cannot read.
      {"getenv", F(&NoEnvironment), "loaded code sees no environment"},
      {"secure_getenv", F(&NoEnvironment), "loaded code sees no environment"},
      {"qsort", F(&mpkbox_compartment_qsort),
       "a merge sort that writes only the array and its own stack"},
      {"qsort_r", F(&mpkbox_compartment_qsort_r),
       "a merge sort that writes only the array and its own stack"},
      {"__cxa_atexit", F(&mpkbox_compartment_cxa_atexit),
       "the compartment's own destructor list, run inside"},
      {"atexit", F(&mpkbox_compartment_atexit),
       "the compartment's own destructor list, run inside"},
      {"__cxa_finalize", F(&mpkbox_compartment_cxa_finalize),
       "runs the compartment's own destructor list, inside"},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
