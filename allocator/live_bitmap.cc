#include "allocator/live_bitmap.h"

#include <sys/mman.h>

#include "allocator/address_zone.h"
#include "runtime/keys/pku.h"

namespace mpkbox::internal {

absl::Status LiveBitmap::Tag() {
  return TagPages(words_, kMetadataBytesPerWindow, PROT_READ | PROT_WRITE,
                  Keys().trusted);
}

void LiveBitmap::Clear(uintptr_t used) {
  // Only the part for the used bytes; the rest was never touched.
  const size_t bits = ((used / 128) + MPKBOX_PAGE_SIZE - 1) &
                      ~size_t{MPKBOX_PAGE_SIZE - 1};
  if (bits != 0) madvise(words_, bits, MADV_DONTNEED);
  const size_t classes = ((used >> 12) + MPKBOX_PAGE_SIZE - 1) &
                         ~size_t{MPKBOX_PAGE_SIZE - 1};
  if (classes != 0) madvise(classes_, classes, MADV_DONTNEED);
}

void LiveBitmap::Untag() {
  const uintptr_t base = reinterpret_cast<uintptr_t>(words_);
  ReleaseZoneRange(base, kMetadataBytesPerWindow);
  // The fresh mapping has lost the reservation's advice (address_zone.cc);
  // with it again, it merges back into its neighbours.
  NoHugePages(base, kMetadataBytesPerWindow);
}

}  // namespace mpkbox::internal
