// POSIX regular expressions for loaded code: glibc's own regcomp, regexec
// and regfree. They allocate through malloc, which inside is the
// compartment's heap (libc's internal calls reach the process's interposed
// malloc), lock only the compiled pattern's own lock, and write only the
// regex_t, its allocations and the caller's buffers (tests/libc_misc_test.cc
// runs them with key 0 read-only). They read the thread's locale, which
// inside is the host's global one (C unless the host calls setlocale).
// glibc's regerror translates its message through gettext, whose lock is
// key-0 memory: regerror is this file's, with glibc's untranslated texts.
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include <iterator>

#include "runtime/compartment_libc/bindings.h"

namespace mpkbox::internal {
namespace {

// glibc's messages (posix/regcomp.c), by error code.
constexpr const char* kMessages[] = {
    "Success",                                // REG_NOERROR
    "No match",                               // REG_NOMATCH
    "Invalid regular expression",             // REG_BADPAT
    "Invalid collation character",            // REG_ECOLLATE
    "Invalid character class name",           // REG_ECTYPE
    "Trailing backslash",                     // REG_EESCAPE
    "Invalid back reference",                 // REG_ESUBREG
    "Unmatched [, [^, [:, [., or [=",         // REG_EBRACK
    "Unmatched ( or \\(",                     // REG_EPAREN
    "Unmatched \\{",                          // REG_EBRACE
    "Invalid content of \\{\\}",              // REG_BADBR
    "Invalid range end",                      // REG_ERANGE
    "Memory exhausted",                       // REG_ESPACE
    "Invalid preceding regular expression",   // REG_BADRPT
    "Premature end of regular expression",    // REG_EEND
    "Regular expression too big",             // REG_ESIZE
    "Unmatched ) or \\)",                     // REG_ERPAREN
};

size_t Regerror(int code, const regex_t*, char* buf, size_t size) {
  // glibc aborts on a code it never returns: a contained fault here.
  if (code < 0 || static_cast<size_t>(code) >= std::size(kMessages)) abort();
  const char* msg = kMessages[code];
  const size_t n = strlen(msg) + 1;
  if (size != 0) {  // cut to fit, always terminated
    const size_t copied = n < size ? n : size;
    memcpy(buf, msg, copied);
    buf[copied - 1] = '\0';
  }
  return n;
}

constexpr char kCompartmentHeap[] =
    "glibc's: writes the regex_t and what it allocates on the compartment's "
    "heap, nothing of key 0";

}  // namespace

absl::Span<const LibcBinding> RegexBindings() {
  static const LibcBinding kBindings[] = {
      {"regcomp", LibcFn(&regcomp), kCompartmentHeap},
      {"regexec", LibcFn(&regexec), kCompartmentHeap},
      {"regerror", LibcFn(&Regerror),
       "copies a constant message into the caller's buffer"},
      {"regfree", LibcFn(&regfree), "glibc's: frees to the compartment's heap"},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
