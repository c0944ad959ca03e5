#include "runtime/keys/pku.h"

#include <cpuid.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "absl/strings/str_format.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {
namespace {
RuntimeKeys g_keys;  // written once, by Init, before any compartment exists
}  // namespace

const RuntimeKeys& Keys() { return g_keys; }
void SetKeys(const RuntimeKeys& keys) { g_keys = keys; }

bool CpuHasPku() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kPku = 1u << 3, kOspke = 1u << 4;
  return (ecx & kPku) && (ecx & kOspke);
}

absl::StatusOr<int> AllocateKey(absl::string_view purpose) {
  int key = pkey_alloc(0, 0);
  if (key >= 0) return key;
  int err = errno;
  if (err == ENOSPC) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no free protection key for %s: all %d hardware keys are in use",
        purpose, kNumKeys - 1));
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "pkey_alloc for %s failed: %s", purpose, strerror(err)));
}

void FreeKey(int key) {
  if (key > 0) pkey_free(key);  // never key 0 (docs/DESIGN.md 5b)
}

absl::Status TagPages(void* addr, size_t len, int prot, int key) {
  if (pkey_mprotect(addr, len, prot, key) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat(
      "pkey_mprotect(%p, %u bytes, key %d): %s", addr, len, key,
      strerror(errno)));
}

uint32_t CompartmentPkru(int key, int selector_key, Ambient ambient) {
  uint32_t pkru = 0;
  for (int k = 0; k < kNumKeys; ++k) pkru |= kAccessDisable << (2 * k);
  auto set = [&pkru](int k, uint32_t bits) {
    pkru = (pkru & ~(3u << (2 * k))) | (bits << (2 * k));
  };
  set(0, ambient == Ambient::kReadOnly ? kWriteDisable : 0);
  set(selector_key, kWriteDisable);
  set(key, 0);
  return pkru;
}

void OpenAllKeysInThisThread() {
  if (ReadPkru() == 0) return;
  mpkbox_open_all_keys();
}

}  // namespace mpkbox::internal
