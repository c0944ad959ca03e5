#include "allocator/address_zone.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace mpkbox::internal {

Zone g_zone;

namespace {

constexpr int kReserveFlags =
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

uintptr_t Reserve(size_t bytes, size_t alignment) {
  void* p = mmap(nullptr, bytes + alignment, PROT_NONE, kReserveFlags, -1, 0);
  if (p == MAP_FAILED) return 0;
  uintptr_t raw = reinterpret_cast<uintptr_t>(p);
  uintptr_t aligned = (raw + alignment - 1) & ~(alignment - 1);
  if (aligned > raw) munmap(p, aligned - raw);
  uintptr_t end = raw + bytes + alignment;
  if (end > aligned + bytes) {
    munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  }
  return aligned;
}

}  // namespace

void NoHugePages(uintptr_t addr, size_t len) {
  // Advice only: a kernel without THP says EINVAL, and then has none.
  madvise(reinterpret_cast<void*>(addr), len, MADV_NOHUGEPAGE);
}

absl::Status ReserveZone() {
  if (g_zone.size != 0) return absl::OkStatus();
  const size_t zone_bytes = kZoneWindows * kWindowBytes;
  uintptr_t base = Reserve(zone_bytes, kWindowBytes);
  uintptr_t bitmaps =
      Reserve(kMaxCompartments * kMetadataBytesPerWindow, MPKBOX_PAGE_SIZE);
  if (base == 0 || bitmaps == 0) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "cannot reserve %u GiB of address space for compartment heaps: %s",
        zone_bytes >> 30, strerror(errno)));
  }
  // The live bits and class bytes are touched a page here and there (a
  // compartment's first MiB uses 8 KiB of bits): under transparent huge
  // pages `always`, each first touch would commit 2 MiB (4,092 compartments:
  // 4 GB; bench/RESULTS.md, "Huge pages").
  NoHugePages(bitmaps, kMaxCompartments * kMetadataBytesPerWindow);
  g_zone.bitmap_base = bitmaps;
  g_zone.base = base;
  g_zone.size = zone_bytes;
  return absl::OkStatus();
}

void ReleaseZoneRange(uintptr_t addr, size_t len) {
  if (len == 0) return;
  // A fresh mapping drops the pages and the key tag at once, and merges
  // back into the reservation (the mapping count stays flat).
  if (mmap(reinterpret_cast<void*>(addr), len, PROT_NONE,
           kReserveFlags | MAP_FIXED, -1, 0) == MAP_FAILED) {
    // Leaving tagged pages behind would hand them to the key's next owner.
    fprintf(stderr, "mpkbox: cannot release heap memory at %p: %s\n",
            reinterpret_cast<void*>(addr), strerror(errno));
    abort();
  }
}

}  // namespace mpkbox::internal
