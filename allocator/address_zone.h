// The address zone: one reservation holding every compartment heap (a fixed
// window per compartment slot) and the ambient heap, so that "which heap owns
// this pointer" is a subtraction and a shift, and so that a window returns to
// PROT_NONE, key 0, in one mmap when its heap is dropped.
#ifndef MPKBOX_ALLOCATOR_ADDRESS_ZONE_H_
#define MPKBOX_ALLOCATOR_ADDRESS_ZONE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

inline constexpr int kWindowShift = 32;  // 4 GiB of address space per heap
inline constexpr size_t kWindowBytes = size_t{1} << kWindowShift;
// Window kMaxCompartments is the ambient heap (key 0, see host_heap.h).
inline constexpr size_t kAmbientWindow = kMaxCompartments;
inline constexpr size_t kZoneWindows = kMaxCompartments + 1;
// Per compartment window, on the trusted key: one live bit per 16 bytes,
// then one size-class byte per page (heap_cache.h's classes, or kNoClass).
inline constexpr size_t kBitmapBytesPerWindow = kWindowBytes / 16 / 8;
inline constexpr size_t kClassMapBytesPerWindow = kWindowBytes >> 12;
inline constexpr size_t kMetadataBytesPerWindow =
    kBitmapBytesPerWindow + kClassMapBytesPerWindow;
inline constexpr uint8_t kNoClass = 0xff;

struct Zone {
  uintptr_t base = 0;         // window i starts at base + i * kWindowBytes
  uintptr_t size = 0;         // 0 until reserved: nothing is in the zone
  uintptr_t bitmap_base = 0;  // window i's live bits (trusted key when used)
};
extern Zone g_zone;

// Reserves the zone (PROT_NONE, no memory committed). Idempotent; not
// thread-safe (called once, from the allocator's initialization).
absl::Status ReserveZone();

inline bool InZone(uintptr_t p) { return p - g_zone.base < g_zone.size; }
inline size_t WindowOf(uintptr_t p) {
  return (p - g_zone.base) >> kWindowShift;
}
inline uintptr_t WindowBase(size_t window) {
  return g_zone.base + (window << kWindowShift);
}
inline uint64_t* WindowBitmap(size_t window) {
  return reinterpret_cast<uint64_t*>(g_zone.bitmap_base +
                                     window * kMetadataBytesPerWindow);
}
inline uint8_t* WindowClassMap(size_t window) {
  return reinterpret_cast<uint8_t*>(WindowBitmap(window)) +
         kBitmapBytesPerWindow;
}

// Returns [addr, addr + len) of the zone to PROT_NONE, key 0, no pages.
void ReleaseZoneRange(uintptr_t addr, size_t len);

// MADV_NOHUGEPAGE over [addr, addr + len): sparsely touched metadata.
void NoHugePages(uintptr_t addr, size_t len);

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_ADDRESS_ZONE_H_
