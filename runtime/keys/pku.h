// Memory protection keys: CPU support, the runtime's keys, PKRU values,
// tagging pages. The lowest C++ layer: it includes nothing of mpkbox but the
// public option types.
#ifndef MPKBOX_RUNTIME_KEYS_PKU_H_
#define MPKBOX_RUNTIME_KEYS_PKU_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mpkbox/compartment_options.h"

namespace mpkbox::internal {

inline constexpr int kNumKeys = 16;
// PKRU bits for key k: access-disable at 2k, write-disable at 2k+1.
inline constexpr uint32_t kAccessDisable = 1;
inline constexpr uint32_t kWriteDisable = 2;

// The runtime's process-wide keys.
struct RuntimeKeys {
  int trusted = -1;   // runtime state, host heap, per-thread blocks
  int selector = -1;  // selector pages: read-only to compartments
};
// Valid once Runtime::Init succeeded (it calls SetKeys).
const RuntimeKeys& Keys();
void SetKeys(const RuntimeKeys& keys);

// CPUID says the CPU has PKU and the OS enabled it (OSPKE).
bool CpuHasPku();

inline uint32_t ReadPkru() {
  uint32_t eax, edx;
  asm volatile("rdpkru" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

// pkey_alloc with an error that says why. The key opens in this thread only.
absl::StatusOr<int> AllocateKey(absl::string_view purpose);
void FreeKey(int key);

// pkey_mprotect, with the range and key in the error.
absl::Status TagPages(void* addr, size_t len, int prot, int key);

// The PKRU of a compartment whose memory carries `key`.
uint32_t CompartmentPkru(int key, int selector_key, Ambient ambient);

// Gives this thread the host's rights (PKRU 0), with trampolines/'s checked
// WRPKRU: the runtime runs no stray one (libc's pkey_set stays a trap,
// gadget_guard.h). Only outside every compartment.
void OpenAllKeysInThisThread();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_KEYS_PKU_H_
