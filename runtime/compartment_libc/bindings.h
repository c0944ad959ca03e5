// Loaded code's libc imports that mpkbox answers itself: one table per
// concern, each defined by that concern's file in runtime/compartment_libc/.
// runtime/loader/import_policy.cc binds an import here first; what no table
// names falls to its lists of pure functions, or to a trap.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_BINDINGS_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_BINDINGS_H_

#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mpkbox::internal {

struct LibcBinding {
  const char* name;
  void* fn;
  // One line: why it is safe with compartment rights, or what the host
  // checks before it acts (docs/THREAT_MODEL.md lists what each reaches).
  const char* why;
};

// A binding's function as its table holds it.
inline void* LibcFn(auto* fn) { return reinterpret_cast<void*>(fn); }

// Each concern's table, in the file of that concern.
absl::Span<const LibcBinding> RuntimeLinkBindings();  // runtime_link.cc
absl::Span<const LibcBinding> SyscallBindings();      // syscalls.cc
absl::Span<const LibcBinding> MemoryBindings();       // memory.cc
absl::Span<const LibcBinding> LocaleBindings();       // locale.cc
absl::Span<const LibcBinding> ProcessBindings();      // process.cc
absl::Span<const LibcBinding> TimeBindings();         // time.cc
absl::Span<const LibcBinding> RegexBindings();        // regex.cc
absl::Span<const LibcBinding> StdioBindings();        // stdio_streams.cc
absl::Span<const LibcBinding> FormatBindings();       // format.cc
absl::Span<const LibcBinding> ThreadBindings();       // threads.cc
absl::Span<const LibcBinding> FileBindings();         // files.cc
absl::Span<const LibcBinding> RefusalBindings();      // refusals.cc

// The binding for `name`, or null.
const LibcBinding* FindLibcBinding(absl::string_view name);
// Every binding of every table (tests, docs).
std::vector<const LibcBinding*> AllLibcBindings();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_BINDINGS_H_
