#include "runtime/keys/seal.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "trampolines/gate_layout.h"

#ifndef SYS_mseal
#define SYS_mseal 462
#endif

namespace mpkbox::internal {
namespace {

std::atomic<bool> g_enabled{false};
std::atomic<bool> g_unavailable{false};  // the kernel said ENOSYS

}  // namespace

void EnableSealing() { g_enabled.store(true); }

bool SealingAvailable() {
  return g_enabled.load() && !g_unavailable.load();
}

bool Seal(const void* p, size_t bytes) {
  if (!SealingAvailable() || bytes == 0) return false;
  constexpr uintptr_t kPage = MPKBOX_PAGE_SIZE;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p) & ~(kPage - 1);
  const uintptr_t hi =
      (reinterpret_cast<uintptr_t>(p) + bytes + kPage - 1) & ~(kPage - 1);
  if (syscall(SYS_mseal, lo, hi - lo, 0) == 0) return true;
  if (errno == ENOSYS) g_unavailable.store(true);
  return false;
}

}  // namespace mpkbox::internal
