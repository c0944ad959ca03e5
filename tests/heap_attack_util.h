// Attacks on the heaps (DESIGN.md 6, items 9, 10 and 11), done from
// compartment code for real, as an attacker would. One binary per class:
// - heap_attack_free_test.cc: hostile frees;
// - heap_attack_cache_test.cc: tampering with its own HeapCache;
// - heap_attack_entry_test.cc: forged calls of the allocator entry and
//   jemalloc's own API called directly;
// - heap_attack_register_leak_test.cc: what the allocator entry and the gate
//   leave in registers;
// - heap_attack_migration_test.cc: regions moving between the host heap and
//   a compartment heap;
// - heap_attack_exhaustion_test.cc: exhaustion, alignment, deadlines;
// - heap_attack_self_corruption_test.cc: a compartment that corrupts its
//   own heap.
// Each attack must be stopped (kAborted naming the compartment and the
// address, or the escape simply fails), the host's memory must be unchanged,
// the host must go on allocating heavily, and the compartment must work
// after Reset(). Tests named Control* show what a check stops, by doing the
// same thing where nothing stops it.
//
// This file: what those binaries share.
#ifndef MPKBOX_TESTS_HEAP_ATTACK_UTIL_H_
#define MPKBOX_TESTS_HEAP_ATTACK_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "allocator/heap_cache.h"
#include "mpkbox/mpkbox.h"

namespace mpkbox::heap_attack {

// ---- helpers shared by host and compartment code ---------------------------

// GCC deletes a malloc whose result is only freed, and stores to memory
// nobody reads: everything goes through these.
template <typename T>
[[gnu::always_inline]] inline T Opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}
[[gnu::always_inline]] inline void Escape(const void* p) {
  asm volatile("" : : "r"(p) : "memory");
}
void* Malloc(size_t n);
void Free(void* p);
void* Realloc(void* p, size_t n);

uint8_t PatternByte(uint64_t seed, size_t i);
// Writes the pattern every `stride` bytes and at the last byte.
void FillPattern(void* p, size_t n, uint64_t seed, size_t stride = 61);
bool CheckPattern(const void* p, size_t n, uint64_t seed, size_t stride = 61);
// The first `n` bytes of a region of `old_n` filled by FillPattern (after a
// realloc that kept only that much).
bool CheckPrefix(const void* p, size_t n, size_t old_n, uint64_t seed);

struct XorShift {
  uint64_t s;
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

size_t ClassOf(size_t n);

// ---- host state that no attack may change ----------------------------------

extern int host_global;  // 0x600d
constexpr size_t kCanaryBytes = 4096;

// A live host heap allocation full of a pattern.
struct HostCanary {
  std::unique_ptr<uint8_t[]> heap{new uint8_t[kCanaryBytes]};
  HostCanary();
  bool Intact() const;
  uintptr_t address() const { return reinterpret_cast<uintptr_t>(heap.get()); }
};

// Which protection key each mapping carries, read once from smaps (one
// PkeyOfAddress per address would read it thousands of times).
class KeySnapshot {
 public:
  KeySnapshot();
  // -1 if nothing maps `a`.
  int KeyOf(uintptr_t a) const;
  bool OnMainStack(uintptr_t a) const;

 private:
  struct Map {
    uintptr_t lo, hi;
    int key;
    bool stack;
  };
  const Map* MapOf(uintptr_t a) const;
  std::vector<Map> maps_;  // in address order, as smaps lists them
};

// Fails the test unless none of `n` host allocations of `bytes` is `p`. A
// region the host frees comes back at once (ControlHostReusesWhatItFrees),
// so a region wrongly freed into the host heap would show up here.
void ExpectHostNeverHandsOut(uintptr_t p, size_t bytes, int n = 256);

// The process still works: 100k mixed-size allocations and frees by the
// host through every entry point, each checked for its content; none may
// come from the address zone of the compartment heaps, and every one that
// is live at the end must carry the trusted key.
void HostAllocatesHeavily(int iterations = 100000);

// ---- compartment code ------------------------------------------------------
// Runs with the compartment's rights: reads key 0, writes only its own
// memory, never errno.

// This thread's HeapCache for the running compartment, found the way any
// compartment code can: TLS, then the read-only table below the
// SelectorPage.
internal::HeapCache* MyCache();

// Mixed allocations (malloc, calloc, realloc, posix_memalign, new) with
// content checks: 1 when everything came back as written.
int Workout(int rounds);

// Calls callback stub 0, the allocator entry, with any registers, as
// compartment code can.
uint64_t ForgeEntry(uint64_t op, uint64_t a, uint64_t b);

uintptr_t MallocFilled(size_t n, uint64_t seed);
// The same, then an allocator entry (malloc_usable_size always enters), so
// that the runtime has seen the region taken even if it came from the
// magazine (see HostFreeOfARegionFromTheMagazine).
uintptr_t MallocFilledSeen(size_t n, uint64_t seed);
int CheckFilled(const void* p, size_t n, uint64_t seed);
void FreeOne(void* p);
size_t UsableSizeInside(void* p);

// A region the runtime put in the magazine of `n`-byte regions but did not
// hand out (it is not a live allocation).
uintptr_t UnpoppedMagazineRegion(size_t n);
uintptr_t MyCacheAddress();

// Written by compartment code: it lives in the compartment's heap.
struct Scratch {
  int reached;    // the code after the attack ran
  int had_cache;  // the thread had a HeapCache before the attack
  uint64_t value;
  uint64_t extra;
};

// ---- host side -------------------------------------------------------------

Scratch* NewScratch(Compartment* box);

// The compartment is healthy: a Workout inside returns 1 and leaves no
// fault.
void ExpectCompartmentWorks(Compartment* box);

// The end of a hostile free: kAborted naming the compartment, the address
// and why; calls refused until Reset.
void ExpectFreeViolation(Compartment* box, const absl::Status& s,
                         uintptr_t address);

// A contained memory fault at `address` (or within 64 bytes above it) on a
// page of key `key`.
void ExpectKeyFault(Compartment* box, const absl::Status& s, uintptr_t address,
                    int key);

void ResetAndExpectWorking(Compartment* box);

// The memory a compartment can write: from the start of its heap's window,
// as far as Contains says yes.
size_t WritableHeapBytes(const Compartment* box, uintptr_t some_allocation);

}  // namespace mpkbox::heap_attack

#endif  // MPKBOX_TESTS_HEAP_ATTACK_UTIL_H_
