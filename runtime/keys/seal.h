// mseal (Linux 6.10+): mappings of the runtime that must never be unmapped,
// remapped or re-protected (the gate and signal entry's code, the selector
// pages, the import trap region) are sealed once set up. Sealing is
// irreversible, so sealed memory is reused, never unmapped. Never for memory
// whose key changes: compartment memory is re-tagged.
#ifndef MPKBOX_RUNTIME_KEYS_SEAL_H_
#define MPKBOX_RUNTIME_KEYS_SEAL_H_

#include <cstddef>

namespace mpkbox::internal {

// Runtime::Init turns sealing on (off under a test switch).
void EnableSealing();

// Seals the pages covering [p, p + bytes). Returns whether they are sealed:
// false when sealing is off or the kernel has no mseal (ENOSYS: before
// 6.10), which SealingAvailable() then reports.
bool Seal(const void* p, size_t bytes);
bool SealingAvailable();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_KEYS_SEAL_H_
