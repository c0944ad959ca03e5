#include "runtime/compartment_stack.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "absl/strings/str_format.h"
#include "runtime/keys/pku.h"

namespace mpkbox::internal {

absl::StatusOr<StackMapping> MapCompartmentStack(size_t stack_bytes, int key,
                                                 absl::string_view name) {
  StackMapping m;
  m.size = CompartmentStackSize(stack_bytes);
  const size_t usable = m.size - kGuardBytes;
  void* p = mmap(nullptr, m.size, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "compartment '%s': cannot map a %u-byte stack: %s", name, m.size,
        strerror(errno)));
  }
  m.base = reinterpret_cast<uintptr_t>(p);
  // The guard carries the key too, so an overflow reports SEGV_ACCERR (a
  // guard hit) rather than SEGV_PKUERR (key 0 is write-disabled inside).
  absl::Status s = TagPages(p, kGuardBytes, PROT_NONE, key);
  if (s.ok()) {
    s = TagPages(reinterpret_cast<void*>(m.base + kGuardBytes), usable,
                 PROT_READ | PROT_WRITE, key);
  }
  if (!s.ok()) {
    munmap(p, m.size);
    return absl::InternalError(
        absl::StrFormat("compartment '%s': stack: %s", name, s.message()));
  }
  return m;
}

size_t CompartmentStackSize(size_t stack_bytes) {
  return ((stack_bytes + kGuardBytes - 1) & ~(kGuardBytes - 1)) + kGuardBytes;
}

void UnmapCompartmentStack(const StackMapping& stack) {
  if (stack.base != 0) munmap(reinterpret_cast<void*>(stack.base), stack.size);
}

bool ScrubCompartmentStack(const StackMapping& stack) {
  if (stack.base == 0) return false;
  // The top pages, which every call uses, are zeroed in place: dropped, the
  // next call would fault each one in again (a microsecond or more in a VM).
  // The rest, private anonymous memory, is dropped: the next touch of each
  // page gets a zero page, and pages never touched cost nothing.
  const size_t usable = stack.size - kGuardBytes;
  const size_t hot = usable < kScrubInPlaceBytes ? usable : kScrubInPlaceBytes;
  memset(reinterpret_cast<void*>(stack.top() - hot), 0, hot);
  if (hot == usable ||
      madvise(reinterpret_cast<void*>(stack.base + kGuardBytes), usable - hot,
              MADV_DONTNEED) == 0) {
    return true;
  }
  UnmapCompartmentStack(stack);  // never keep old contents
  return false;
}

}  // namespace mpkbox::internal
