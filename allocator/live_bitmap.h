// What the runtime knows about the regions of one compartment window, on
// the trusted key where the address zone placed it: one live bit per 16
// bytes (set while an allocation starts there) and one size-class byte per
// page. Compartment code can neither read nor forge it, so every pointer it
// hands back is checked here.
#ifndef MPKBOX_ALLOCATOR_LIVE_BITMAP_H_
#define MPKBOX_ALLOCATOR_LIVE_BITMAP_H_

#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/status/status.h"
#include "allocator/address_zone.h"
#include "allocator/heap_cache.h"

namespace mpkbox::internal {

class LiveBitmap {
 public:
  explicit LiveBitmap(size_t slot)
      : window_(WindowBase(slot)),
        words_(WindowBitmap(slot)),
        classes_(WindowClassMap(slot)) {}

  uintptr_t window() const { return window_; }
  // For batch loops that keep a word in a register (magazines.cc).
  uint64_t* words() const { return words_; }
  const uint8_t* classes() const { return classes_; }

  // Inline, always: the allocator entry's checks are built on these.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool IsLive(uintptr_t p) const {
    const uintptr_t off = p - window_;
    if (off >= kWindowBytes || (off & (kMinAllocation - 1)) != 0) return false;
    const uintptr_t bit = off / kMinAllocation;
    return (words_[bit / 64] >> (bit % 64)) & 1;
  }
  // p is a region of the window.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void SetLive(uintptr_t p) {
    const uintptr_t bit = (p - window_) / kMinAllocation;
    words_[bit / 64] |= uint64_t{1} << (bit % 64);
  }
  // Clears p's bit; false, and nothing changes, unless p was live.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TakeLive(uintptr_t p) {
    const uintptr_t off = p - window_;
    if (off >= kWindowBytes || (off & (kMinAllocation - 1)) != 0) return false;
    const uintptr_t bit = off / kMinAllocation;
    const uint64_t mask = uint64_t{1} << (bit % 64);
    uint64_t& word = words_[bit / 64];
    if (!(word & mask)) return false;
    word &= ~mask;
    return true;
  }

  // The size class of the regions that start on p's page (all share one
  // jemalloc slab, hence one size), or kNoClass.
  ABSL_ATTRIBUTE_ALWAYS_INLINE uint8_t PageClass(uintptr_t p) const {
    return classes_[(p - window_) >> 12];
  }
  // Also in the compartment's copy (heap_cache.h), as c + 1: kNoClass
  // becomes 0, as its untouched pages read.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void SetPageClass(uintptr_t p, uint8_t c) {
    classes_[(p - window_) >> 12] = c;
    reinterpret_cast<uint8_t*>(window_)[(p - window_) >> 12] =
        static_cast<uint8_t>(c + 1);
  }

  // The pages of the metadata: on the trusted key, read-write.
  absl::Status Tag();
  // Zeroes the metadata of the window's first `used` bytes (its pages go
  // back to the kernel): the arena that used them is gone.
  void Clear(uintptr_t used);
  // The metadata's pages back to the zone (PROT_NONE, key 0).
  void Untag();

 private:
  const uintptr_t window_;
  uint64_t* const words_;
  uint8_t* const classes_;
};

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_LIVE_BITMAP_H_
