// Key virtualisation (issue 16 item 1): more live compartments than hardware
// keys. Each compartment keeps a secret in its heap; another compartment that
// reads it must fault whether the owner holds a hardware key now or was
// evicted, and with the eviction's re-tag switched off (a child) the read
// succeeds. A compartment a thread is in, running its code or blocked in a
// callback, keeps its key while more threads than keys run compartments;
// with the key cache's in-use check switched off (a child) a running one is
// evicted and faults.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "allocator/huge_chunks.h"
#include "allocator/jemalloc_instance.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "runtime/keys/pku.h"
#include "runtime/slot_registry.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

// Hardware keys compartments can hold: 16 less key 0, trusted and selector.
constexpr int kCompartmentKeys = 13;

uint64_t ReadU64(uintptr_t p) {
  return *reinterpret_cast<volatile uint64_t*>(p);
}
uint64_t SecretOf(size_t i) { return 0x5ec7e70000000000 + i * 7919; }

// A compartment with a secret in its own heap.
struct Holder {
  std::unique_ptr<Compartment> box;
  uint64_t* secret = nullptr;
  uintptr_t address() const { return reinterpret_cast<uintptr_t>(secret); }
};

Holder MakeHolder(const std::string& name, size_t i) {
  Holder h;
  absl::StatusOr<std::unique_ptr<Compartment>> box =
      Compartment::Create({.name = name});
  if (!box.ok()) return h;
  h.box = *std::move(box);
  absl::StatusOr<void*> p = h.box->Allocate(sizeof(uint64_t));
  if (!p.ok()) return Holder{};
  h.secret = static_cast<uint64_t*>(*p);
  *h.secret = SecretOf(i);
  return h;
}

std::vector<Holder> MakeHolders(size_t n, const std::string& prefix) {
  std::vector<Holder> holders;
  for (size_t i = 0; i < n; ++i) {
    holders.push_back(MakeHolder(absl::StrCat(prefix, i), i));
    EXPECT_NE(holders.back().box, nullptr) << i << " compartments live";
    if (holders.back().box == nullptr) break;
  }
  return holders;
}

// Every compartment reads its own secret, from `threads` threads at once,
// each in its own shuffled order.
void CallEachFromThreads(const std::vector<Holder>& holders, int threads) {
  std::atomic<int> wrong{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<size_t> order(holders.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), std::mt19937(t + 1));
      for (size_t i : order) {
        absl::StatusOr<Tainted<uint64_t>> r =
            holders[i].box->Call(&ReadU64, holders[i].address());
        if (!r.ok()) {
          if (failed.fetch_add(1) < 3) ADD_FAILURE() << i << ": " << r.status();
        } else if (r->UnverifiedValue("test") != SecretOf(i)) {
          wrong.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed.load(), 0);
}

unsigned Arenas(const internal::JemallocInstance& je) {
  unsigned n = 0;
  size_t len = sizeof(n);
  EXPECT_EQ(je.mallctl("arenas.narenas", &n, &len, nullptr, 0), 0);
  return n;
}

// The attacker reads the victim's secret; a contained SEGV_PKUERR whose
// report names the victim.
void ExpectReadStopped(Compartment* attacker, const Holder& victim,
                       const std::string& owner_text,
                       uint64_t secret = SecretOf(0)) {
  absl::StatusOr<Tainted<uint64_t>> r =
      attacker->Call(&ReadU64, victim.address());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  const FaultReport* f = attacker->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->signal, SIGSEGV);
  EXPECT_EQ(f->code, SEGV_PKUERR) << f->what;
  EXPECT_EQ(f->address, victim.address());
  EXPECT_THAT(f->key_owner, ::testing::HasSubstr(owner_text)) << f->what;
  ASSERT_TRUE(attacker->Reset().ok());
  EXPECT_EQ(*victim.secret, secret);  // untouched
}

// Every compartment slot live at once (kMaxCompartments: domain ids carry 12
// slot bits). Their heaps are jemalloc arenas: the process's jemalloc holds
// 4,092 of them (12-bit arena indices, three taken), mpkbox's private copy
// the last ones (allocator/jemalloc_instance.h).
TEST(KeyVirtualisationTest, EverySlotLiveCalledFromThreadsAndIsolated) {
  const size_t n = internal::kMaxCompartments;
  std::vector<Holder> holders = MakeHolders(n, "kv");
  ASSERT_EQ(holders.size(), n);
  // The process's jemalloc has used up its arena indices; the private one
  // has arenas besides its arena 0.
  EXPECT_EQ(Arenas(internal::kSystemJemalloc), 4095u);
  EXPECT_GT(Arenas(internal::kPrivateJemalloc), 1u);
  // The next one is refused by the slot registry, by name.
  absl::StatusOr<std::unique_ptr<Compartment>> extra =
      Compartment::Create({.name = "one-too-many"});
  ASSERT_FALSE(extra.ok());
  EXPECT_EQ(extra.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(extra.status().message()),
              ::testing::HasSubstr("compartment 'one-too-many': 4096"));
  const internal::KeyCacheStats before = internal::GetKeyCacheStats();
  CallEachFromThreads(holders, 4);
  const internal::KeyCacheStats after = internal::GetKeyCacheStats();
  EXPECT_GE(after.evictions - before.evictions, 4 * n - 4 * kCompartmentKeys);
  int resident = 0;
  for (const Holder& h : holders) resident += h.box->pkey() >= 0 ? 1 : 0;
  EXPECT_LE(resident, kCompartmentKeys);
  // Isolation between pairs: the first and the last created (one heap of
  // each jemalloc) both ways, then random pairs.
  std::vector<std::pair<size_t, size_t>> pairs = {
      {0, n - 1}, {n - 1, 0}, {n - 1, n - 2}, {n - 2, n - 1}};
  std::mt19937 rng(16);
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  while (pairs.size() < 64) {
    const size_t a = pick(rng);
    const size_t v = pick(rng);
    if (a != v) pairs.emplace_back(a, v);
  }
  for (auto [a, v] : pairs) {
    SCOPED_TRACE(absl::StrCat("kv", a, " reads kv", v));
    ExpectReadStopped(holders[a].box.get(), holders[v],
                      absl::StrCat("compartment 'kv", v, "'"), SecretOf(v));
    EXPECT_EQ(Value(holders[v].box->Call(&ReadU64, holders[v].address())),
              SecretOf(v));
    // The attacker's Reset took its own secret: a new one, for the pairs
    // where it is the victim.
    absl::StatusOr<void*> p = holders[a].box->Allocate(sizeof(uint64_t));
    ASSERT_TRUE(p.ok()) << p.status();
    holders[a].secret = static_cast<uint64_t*>(*p);
    *holders[a].secret = SecretOf(a);
  }
}

// Makes every compartment key in use by `others` (called after `first`), so
// that `first` is the least recently used.
void CallAll(std::vector<Holder>& others) {
  for (size_t i = 0; i < others.size(); ++i) {
    EXPECT_EQ(Value(others[i].box->Call(&ReadU64, others[i].address())),
              SecretOf(i));
  }
}

TEST(KeyVirtualisationTest, ReadingAResidentCompartmentFaults) {
  Holder victim = MakeHolder("victim", 0);
  std::vector<Holder> others = MakeHolders(2 * kCompartmentKeys, "other");
  CallAll(others);  // every key changes hands
  auto attacker = MakeBox({.name = "attacker"});
  ASSERT_TRUE(attacker->Call(+[] {}).ok());
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, victim.address())), SecretOf(0));
  const int key = victim.box->pkey();
  ASSERT_GE(key, 0);
  ASSERT_GE(attacker->pkey(), 0);
  EXPECT_NE(key, attacker->pkey());
  ExpectReadStopped(attacker.get(), victim, "compartment 'victim'");
  EXPECT_EQ(victim.box->pkey(), key);  // the attacker's miss took another
}

TEST(KeyVirtualisationTest, ReadingAnEvictedCompartmentFaults) {
  Holder victim = MakeHolder("victim", 0);
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, victim.address())), SecretOf(0));
  std::vector<Holder> others = MakeHolders(2 * kCompartmentKeys, "other");
  CallAll(others);
  ASSERT_EQ(victim.box->pkey(), -1);  // evicted: its memory waits
  auto attacker = MakeBox({.name = "attacker"});
  ExpectReadStopped(attacker.get(), victim,
                    "compartment 'victim', which holds no hardware key now");
  // The victim comes back with its memory and whatever key is free.
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, victim.address())), SecretOf(0));
  EXPECT_GE(victim.box->pkey(), 0);
  // A re-tagged victim is still named by the report, under its new key.
  ExpectReadStopped(attacker.get(), victim, "compartment 'victim'");
  EXPECT_EQ(attacker->last_fault(), nullptr);  // Reset in ExpectReadStopped
}

// The victim is the least recently used when the attacker misses, so the
// attacker gets the victim's key. With the eviction's re-tag off the
// victim's pages keep that key, and the attacker reads its secret.
uint64_t AttackerTakesTheVictimsKey(bool* same_key) {
  Holder victim = MakeHolder("victim", 0);
  if (!victim.box->Call(&ReadU64, victim.address()).ok()) return 0;
  const int victim_key = victim.box->pkey();
  // Fill every other key (the victim stays the oldest).
  std::vector<Holder> others = MakeHolders(kCompartmentKeys - 1, "other");
  for (Holder& h : others) {
    if (!h.box->Call(&ReadU64, h.address()).ok()) return 0;
  }
  absl::StatusOr<std::unique_ptr<Compartment>> attacker =
      Compartment::Create({.name = "attacker"});
  if (!attacker.ok() || !(*attacker)->Call(+[] {}).ok()) return 0;
  *same_key = (*attacker)->pkey() == victim_key && victim.box->pkey() == -1;
  absl::StatusOr<Tainted<uint64_t>> r =
      (*attacker)->Call(&ReadU64, victim.address());
  return r.ok() ? r->UnverifiedValue("test") : 0;
}

TEST(KeyVirtualisationTest, EvictionRetagIsWhatStopsTheRead) {
  bool same_key = false;
  EXPECT_EQ(AttackerTakesTheVictimsKey(&same_key), 0u);
  EXPECT_TRUE(same_key);
}

TEST(KeyVirtualisationDeathTest, WithoutTheRetagTheNextHolderReadsTheSecret) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipEvictionRetagForTesting();
        bool same_key = false;
        const uint64_t read = AttackerTakesTheVictimsKey(&same_key);
        _exit(!same_key ? 2 : read == SecretOf(0) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- Huge pages (allocator/huge_chunks.h): a dense 2 MiB chunk of a heap
// becomes one huge page, re-tagged as one entry; its tail past what jemalloc
// carved carries the key too. Both must move with the victim.

uint64_t WriteU64(uintptr_t p, uint64_t v) {
  *reinterpret_cast<volatile uint64_t*>(p) = v;
  return v;
}

constexpr uintptr_t kChunk = uintptr_t{2} << 20;
constexpr uint64_t kTailSecret = 0x7a11'5ec7'e700'0001;

// KiB of huge pages in the mappings that meet [lo, hi).
long HugeKiBIn(uintptr_t lo, uintptr_t hi) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  long kib = 0;
  while (std::getline(smaps, line)) {
    uintptr_t start = 0;
    uintptr_t end = 0;
    char dash = 0;
    if (std::istringstream(line) >> std::hex >> start >> dash >> end &&
        dash == '-') {
      inside = start < hi && end > lo;
    } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      kib += std::stol(line.substr(14));
    }
  }
  return kib;
}

// Whether the mapping holding `p` holds a huge page.
bool HugePageBacked(uintptr_t p) { return HugeKiBIn(p, p + 1) >= 2048; }

// Transparent huge pages off ("never"): MADV_COLLAPSE refuses every chunk.
bool HugePagesOff() {
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  return !std::getline(mode, line) ||
         line.find("[never]") != std::string::npos;
}

// The victim's secret sits in a 1.5 MiB allocation it filled, whose chunk
// the key cache collapses as the victim is re-tagged; the victim then writes
// a second secret into the chunk's last bytes, past jemalloc's carve.
// Returns the tail's address, 0 if the chunk never became a huge page.
// *fill_end: the end of the 1.5 MiB allocation.
uintptr_t MakeHugeVictim(Holder* victim, uintptr_t* fill_end = nullptr) {
  *victim = MakeHolder("victim", 0);
  if (victim->box == nullptr) return 0;
  // 2 MiB from just past the window's first MiB (the compartment's copy of
  // the class bytes): the chunk the fill ends in is half full or more, and
  // the rest of it is not carved yet.
  constexpr size_t kBytes = size_t{2} << 20;
  absl::StatusOr<void*> fill = victim->box->Allocate(kBytes);
  if (!fill.ok()) return 0;
  memset(*fill, 0x5a, kBytes);
  const uintptr_t end = reinterpret_cast<uintptr_t>(*fill) + kBytes;
  if (fill_end != nullptr) *fill_end = end;
  const uintptr_t chunk = (end - 1) & ~(kChunk - 1);
  if (end - chunk < kChunk / 4 || end >= chunk + kChunk - 2 * sizeof(uint64_t)) {
    return 0;  // the layout this test is written for has changed
  }
  // Every chunk the fill spans, each one dense: smaps counts huge pages per
  // mapping, so one collapsed chunk would make its neighbours look huge.
  const uintptr_t first = reinterpret_cast<uintptr_t>(*fill) & ~(kChunk - 1);
  auto all_huge = [&] {
    return HugeKiBIn(first, chunk + kChunk) >=
           static_cast<long>((chunk + kChunk - first) >> 10);
  };
  // Misses and evictions re-tag the victim; every 16th looks for dense
  // chunks.
  std::vector<Holder> churn = MakeHolders(kCompartmentKeys, "churn");
  for (int round = 0; round < 40 && !all_huge(); ++round) {
    if (!victim->box->Call(&ReadU64, victim->address()).ok()) return 0;
    for (Holder& h : churn) {
      if (!h.box->Call(&ReadU64, h.address()).ok()) return 0;
    }
  }
  if (!all_huge()) return 0;
  const uintptr_t tail = chunk + kChunk - sizeof(uint64_t);
  if (Value(victim->box->Call(&WriteU64, tail, kTailSecret)) != kTailSecret) {
    return 0;
  }
  return tail;
}

// One read by another compartment: the value, or the contained fault (then
// the reader is Reset).
struct ForeignRead {
  uint64_t value = 0;
  bool pkey_fault = false;  // SIGSEGV, SEGV_PKUERR, at the address read
  std::string key_owner;
};

ForeignRead ReadAs(Compartment* reader, uintptr_t p) {
  ForeignRead out;
  absl::StatusOr<Tainted<uint64_t>> r = reader->Call(&ReadU64, p);
  if (r.ok()) {
    out.value = r->UnverifiedValue("test");
    return out;
  }
  if (const FaultReport* f = reader->last_fault(); f != nullptr) {
    out.pkey_fault = f->signal == SIGSEGV && f->code == SEGV_PKUERR &&
                     f->address == p;
    out.key_owner = f->key_owner;
  }
  EXPECT_TRUE(reader->Reset().ok());
  return out;
}

// As AttackerTakesTheVictimsKey, with the huge victim: the attacker reads
// the secret and the tail.
struct HugeAttack {
  bool same_key = false;
  bool still_huge = false;  // after the victim's re-tag
  ForeignRead secret;
  ForeignRead tail;
};

HugeAttack AttackTheHugeVictim(Holder& victim, uintptr_t tail) {
  HugeAttack a;
  if (!victim.box->Call(&ReadU64, victim.address()).ok()) return a;
  const int victim_key = victim.box->pkey();
  std::vector<Holder> others = MakeHolders(kCompartmentKeys - 1, "other");
  for (Holder& h : others) {
    if (!h.box->Call(&ReadU64, h.address()).ok()) return a;
  }
  absl::StatusOr<std::unique_ptr<Compartment>> attacker =
      Compartment::Create({.name = "attacker"});
  if (!attacker.ok() || !(*attacker)->Call(+[] {}).ok()) return a;
  a.same_key = (*attacker)->pkey() == victim_key && victim.box->pkey() == -1;
  a.still_huge = HugePageBacked(tail);
  a.secret = ReadAs(attacker->get(), victim.address());
  a.tail = ReadAs(attacker->get(), tail);
  return a;
}

TEST(KeyVirtualisationTest, HugePageChunksMoveWithTheirCompartment) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  Holder victim;
  const uintptr_t tail = MakeHugeVictim(&victim);
  ASSERT_NE(tail, 0u) << "the victim's chunk never became a huge page";
  // The window's first chunk too (the class copy's MiB, then the secret and
  // the fill's first MiB), which MakeHugeVictim waited for.
  const uintptr_t first = victim.address() & ~(kChunk - 1);
  EXPECT_GE(HugeKiBIn(first, first + 2 * kChunk), 2 * 2048);
  const HugeAttack a = AttackTheHugeVictim(victim, tail);
  EXPECT_TRUE(a.same_key);
  EXPECT_TRUE(a.still_huge);  // the re-tag changed the entry, kept the page
  for (const ForeignRead& read : {a.secret, a.tail}) {
    EXPECT_EQ(read.value, 0u);
    EXPECT_TRUE(read.pkey_fault);
    EXPECT_THAT(read.key_owner, ::testing::HasSubstr(
        "compartment 'victim', which holds no hardware key now"));
  }
  // The victim still has both, and a Reset leaves nothing of either.
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, victim.address())), SecretOf(0));
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, tail)), kTailSecret);
  ASSERT_TRUE(victim.box->Reset().ok());
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, victim.address())), 0u);
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, tail)), 0u);
}

// Writes 0xa5 over [from, to): compartment code scribbling on its own
// chunk past what jemalloc has carved.
void Scribble(uintptr_t from, uintptr_t to) {
  memset(reinterpret_cast<void*>(from), 0xa5, to - from);
}

// calloc inside: the address, 1 if any byte was not zero, 0 if it failed.
uintptr_t CallocChecked(size_t n) {
  auto* p = static_cast<unsigned char*>(calloc(n, 1));
  if (p == nullptr) return 0;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return 1;
  }
  return reinterpret_cast<uintptr_t>(p);
}

// The chunk's tail was tagged ahead of jemalloc, so its pages are not known
// to be zero: what jemalloc carves there later and hands out zeroed (the
// thread's allocator state, then a calloc) must read zero all the same.
TEST(KeyVirtualisationTest, CallocFromAHugeChunksTailReadsZero) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  Holder victim;
  uintptr_t fill_end = 0;
  const uintptr_t tail = MakeHugeVictim(&victim, &fill_end);
  ASSERT_NE(tail, 0u) << "the victim's chunk never became a huge page";
  const uintptr_t chunk_end = tail + sizeof(uint64_t);
  ASSERT_TRUE(victim.box->Call(&Scribble, fill_end, chunk_end).ok());
  constexpr size_t kBytes = 256 << 10;
  const uintptr_t p = Value(victim.box->Call(&CallocChecked, kBytes));
  ASSERT_GT(p, 1u) << "calloc returned memory that was not zeroed";
  EXPECT_GE(p, fill_end);  // from the scribbled tail
  EXPECT_LE(p + kBytes, chunk_end);
}

// Compartment code: how many 8-byte words of [lo, lo + bytes) are `want`.
uint64_t CountWords(uintptr_t lo, size_t bytes, uint64_t want) {
  const auto* p = reinterpret_cast<const volatile uint64_t*>(lo);
  uint64_t n = 0;
  for (size_t i = 0; i < bytes / 8; ++i) n += p[i] == want;
  return n;
}

// How much of the window at `base` the compartment can write (Contains).
size_t UsedWindowBytes(const Compartment* box, uintptr_t base) {
  size_t lo = 0, hi = size_t{1} << 32;
  while (hi - lo > 4096) {
    const size_t mid = ((lo + hi) / 2) & ~size_t{4095};
    (box->Contains(reinterpret_cast<void*>(base), mid) ? lo : hi) = mid;
  }
  return lo;
}

// The huge victim's whole window, scanned from inside for its fill and its
// tail secret (written past jemalloc's carve, in the chunk tagged whole):
// after its Reset, and in the next compartment of its slot, which takes the
// parked arena and the window's pages with it.
TEST(KeyVirtualisationTest, HugeVictimLeavesNothingInItsWindow) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  Holder victim;
  const uintptr_t tail = MakeHugeVictim(&victim);
  ASSERT_NE(tail, 0u) << "the victim's chunk never became a huge page";
  constexpr uint64_t kFill = 0x5a5a5a5a5a5a5a5a;
  const uintptr_t base = victim.address() & ~((uintptr_t{1} << 32) - 1);
  const size_t used = UsedWindowBytes(victim.box.get(), base);
  ASSERT_GE(base + used, tail + sizeof(uint64_t));
  auto count = [&](Compartment* box, uint64_t want) {
    return Value(box->Call(&CountWords, base, used, want));
  };
  EXPECT_GE(count(victim.box.get(), kFill), (size_t{2} << 20) / 8 - 16);
  EXPECT_EQ(count(victim.box.get(), kTailSecret), 1u);
  ASSERT_TRUE(victim.box->Reset().ok());
  EXPECT_EQ(UsedWindowBytes(victim.box.get(), base), used);  // in place
  EXPECT_EQ(count(victim.box.get(), kFill), 0u);
  EXPECT_EQ(count(victim.box.get(), kTailSecret), 0u);
  // Again, then destroyed: the slot's next compartment.
  ASSERT_TRUE(victim.box->Call(&WriteU64, tail, kTailSecret).ok());
  victim.box.reset();
  auto next = MakeBox({.name = "successor"});
  absl::StatusOr<void*> p = next->Allocate(16);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(reinterpret_cast<uintptr_t>(*p) & ~((uintptr_t{1} << 32) - 1),
            base)
      << "the successor did not get the victim's slot";
  EXPECT_EQ(UsedWindowBytes(next.get(), base), used);  // the parked arena's
  EXPECT_EQ(count(next.get(), kFill), 0u);
  EXPECT_EQ(count(next.get(), kTailSecret), 0u);
  EXPECT_GT(Value(next->Call(&CallocChecked, size_t{2} << 20)), 1u);
}

TEST(KeyVirtualisationDeathTest, WithoutTheRetagTheNextHolderReadsHugePages) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipEvictionRetagForTesting();
        Holder victim;
        const uintptr_t tail = MakeHugeVictim(&victim);
        if (tail == 0) _exit(2);
        const HugeAttack a = AttackTheHugeVictim(victim, tail);
        if (!a.same_key || !a.still_huge) _exit(3);
        _exit(a.secret.value == SecretOf(0) && a.tail.value == kTailSecret
                  ? 0
                  : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- Sparse chunks: a compartment that misses often, with 64 KiB to 512
// KiB in a chunk, has that chunk collapsed too, within a process-wide
// budget (huge_chunks.h).

// A compartment with `bytes` filled in its heap; its secret is in the fill.
Holder MakeFilledHolder(const std::string& name, size_t i, size_t bytes) {
  Holder h = MakeHolder(name, i);
  if (h.box == nullptr) return h;
  absl::StatusOr<void*> fill = h.box->Allocate(bytes);
  if (!fill.ok()) return Holder{};
  memset(*fill, 0x5a, bytes);
  h.secret = static_cast<uint64_t*>(*fill);
  *h.secret = SecretOf(i);
  return h;
}

// Calls every holder in turn, `rounds` times: with more holders than keys
// each call misses and re-tags two compartments.
bool CallRounds(std::vector<Holder>& holders, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    for (Holder& h : holders) {
      if (!h.box->Call(&ReadU64, h.address()).ok()) return false;
    }
  }
  return true;
}

// A 256 KiB heap (64 pages in the chunk, under kDenseChunkPages) missing
// often becomes huge and moves with its compartment; a Reset gives the
// budget back.
void SparseVictimBecomesHugeAndMoves() {
  Holder victim = MakeFilledHolder("victim", 0, 256 << 10);
  ASSERT_NE(victim.box, nullptr);
  const uintptr_t chunk = victim.address() & ~(kChunk - 1);
  std::vector<Holder> churn = MakeHolders(kCompartmentKeys, "churn");
  for (int round = 0; round < 40 && HugeKiBIn(chunk, chunk + kChunk) < 2048;
       ++round) {
    ASSERT_TRUE(victim.box->Call(&ReadU64, victim.address()).ok());
    ASSERT_TRUE(CallRounds(churn, 1));
  }
  ASSERT_GE(HugeKiBIn(chunk, chunk + kChunk), 2048)
      << "the victim's sparse chunk never became a huge page";
  EXPECT_GE(internal::SparseHugeBytes(), kChunk);
  // Most of the chunk lies past jemalloc's carve and took the key whole.
  const uintptr_t tail = chunk + kChunk - sizeof(uint64_t);
  ASSERT_EQ(Value(victim.box->Call(&WriteU64, tail, kTailSecret)),
            kTailSecret);
  const HugeAttack a = AttackTheHugeVictim(victim, tail);
  EXPECT_TRUE(a.same_key);
  EXPECT_TRUE(a.still_huge);
  for (const ForeignRead& read : {a.secret, a.tail}) {
    EXPECT_EQ(read.value, 0u);
    EXPECT_TRUE(read.pkey_fault);
    EXPECT_THAT(read.key_owner, ::testing::HasSubstr(
        "compartment 'victim', which holds no hardware key now"));
  }
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, tail)), kTailSecret);
  // A Reset drops the pages and gives the budget back.
  const size_t charged = internal::SparseHugeBytes();
  ASSERT_TRUE(victim.box->Reset().ok());
  EXPECT_EQ(internal::SparseHugeBytes(), charged - kChunk);
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, tail)), 0u);
}

TEST(KeyVirtualisationTest, SparseChunksOfAMissingCompartmentMoveHuge) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  SparseVictimBecomesHugeAndMoves();
}

// Readable and writable mappings of /proc/self/maps that meet [lo, hi).
int WritableMappingsIn(uintptr_t lo, uintptr_t hi) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) {
    uintptr_t start = 0;
    uintptr_t end = 0;
    char dash = 0;
    std::string perms;
    if (std::istringstream(line) >> std::hex >> start >> dash >> end >>
            perms &&
        start < hi && end > lo && perms.rfind("rw", 0) == 0) {
      ++n;
    }
  }
  return n;
}

// How many of `n` compartments with 64 KiB filled, all missing often, end
// with a huge chunk.
int SparseHugeCompartments(size_t n, int* split = nullptr) {
  std::vector<Holder> holders;
  for (size_t i = 0; i < n; ++i) {
    holders.push_back(MakeFilledHolder(absl::StrCat("sparse", i), i, 64 << 10));
    if (holders.back().box == nullptr) return -1;
  }
  // Each is re-tagged twice a round: past its second look by round 10, and
  // a look that failed (EINVAL, now and then) is retried 32 re-tags later.
  if (!CallRounds(holders, 28)) return -1;
  int huge = 0;
  for (const Holder& h : holders) {
    const uintptr_t chunk = h.address() & ~(kChunk - 1);
    huge += HugeKiBIn(chunk, chunk + kChunk) >= 2048 ? 1 : 0;
    if (split != nullptr) *split += WritableMappingsIn(chunk, chunk + kChunk) > 1;
  }
  return huge;
}

constexpr size_t kBudgetChunks = internal::kSparseHugeBudgetBytes / kChunk;

TEST(KeyVirtualisationTest, SparseHugeChunksStayWithinTheirBudget) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  ASSERT_EQ(internal::SparseHugeBytes(), 0u);  // earlier tests gave it back
  const int huge = SparseHugeCompartments(kBudgetChunks + 8);
  EXPECT_EQ(huge, static_cast<int>(kBudgetChunks));
  EXPECT_EQ(internal::SparseHugeBytes(), 0u);  // all destroyed
}

// Windows reused after the scenario above (each slot's window is parked
// with its arena and reused by the next compartment in the slot): every
// chunk is carved as one mapping, which MADV_COLLAPSE needs. Parked with
// a key change only, an old mapping kept its anon_vma and never merged with
// the next compartment's carve: EINVAL for good, 4 KiB entries for ever.
TEST(KeyVirtualisationTest, ReusedWindowsCarveChunksAsOneMapping) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  SparseVictimBecomesHugeAndMoves();
  int split = 0;
  EXPECT_EQ(SparseHugeCompartments(kBudgetChunks + 8, &split),
            static_cast<int>(kBudgetChunks));
  EXPECT_EQ(split, 0);
}

TEST(KeyVirtualisationDeathTest, WithoutTheBudgetEverySparseChunkIsHuge) {
  if (HugePagesOff()) GTEST_SKIP() << "transparent huge pages are off";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSparseHugeBudgetForTesting();
        _exit(SparseHugeCompartments(kBudgetChunks + 8) ==
                      static_cast<int>(kBudgetChunks + 8)
                  ? 0
                  : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// Blocks the calling compartment's thread until released.
absl::Notification* g_entered = nullptr;
absl::Notification* g_release = nullptr;
void BlockInHost() {
  g_entered->Notify();
  g_release->WaitForNotification();
}

// Reads the secret, blocks in a callback, then reads and writes it again:
// the key must still be the compartment's when the callback returns.
uint64_t ReadBlockWrite(uintptr_t secret, void (*block)()) {
  volatile uint64_t* p = reinterpret_cast<volatile uint64_t*>(secret);
  const uint64_t before = *p;
  block();
  *p = before + 1;
  return *p;
}

TEST(KeyVirtualisationTest, ACompartmentInACallbackIsNeverEvicted) {
  absl::Notification entered, release;
  g_entered = &entered;
  g_release = &release;
  Holder held = MakeHolder("held", 0);
  auto cb = held.box->RegisterCallback(&BlockInHost);
  ASSERT_TRUE(cb.ok()) << cb.status();
  std::vector<Holder> others = MakeHolders(4 * kCompartmentKeys, "busy");
  absl::StatusOr<Tainted<uint64_t>> blocked_result;
  std::thread blocked([&] {
    blocked_result =
        held.box->Call(&ReadBlockWrite, held.address(), cb->get());
  });
  entered.WaitForNotification();
  const int key = held.box->pkey();
  ASSERT_GE(key, 0);
  // More threads than keys, each calling compartments in a random order.
  const internal::KeyCacheStats before = internal::GetKeyCacheStats();
  constexpr int kThreads = kCompartmentKeys + 3;
  std::atomic<int> failed{0};
  std::atomic<bool> key_moved{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t + 7);
      for (int k = 0; k < 150; ++k) {
        const size_t i = rng() % others.size();
        absl::StatusOr<Tainted<uint64_t>> r =
            others[i].box->Call(&ReadU64, others[i].address());
        if (!r.ok() || r->UnverifiedValue("test") != SecretOf(i)) {
          if (failed.fetch_add(1) < 3) {
            ADD_FAILURE() << i << ": " << r.status();
          }
        }
        if (held.box->pkey() != key) key_moved = true;
      }
    });
  }
  for (std::thread& w : workers) w.join();
  const internal::KeyCacheStats after = internal::GetKeyCacheStats();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_FALSE(key_moved.load());
  EXPECT_GT(after.evictions, before.evictions);
  release.Notify();
  blocked.join();
  EXPECT_EQ(Value(blocked_result), SecretOf(0) + 1);
  EXPECT_EQ(*held.secret, SecretOf(0) + 1);
}

// Compartment code spinning on its own memory: it reads the secret (word 0)
// until the host sets word 1. Its first read after an eviction would fault
// (its memory would be on the trusted key).
uint64_t SpinOnOwnMemory(uintptr_t area) {
  volatile uint64_t* p = reinterpret_cast<volatile uint64_t*>(area);
  const uint64_t secret = p[0];
  p[2] = 1;  // running
  while (p[1] == 0) {
    if (p[0] != secret) return 0;
  }
  return secret;
}

// Whether the spinning compartment kept its key while `threads` threads
// call other compartments in random orders (each call likely a miss that
// evicts): 0 if it did, 1 if its call failed (it was evicted while
// running), 2 if its key changed anyway.
int ChurnWhileOneSpins(int threads) {
  Holder spinner = MakeHolder("spinner", 0);
  absl::StatusOr<void*> area = spinner.box->Allocate(3 * sizeof(uint64_t));
  if (!area.ok()) return 3;
  volatile uint64_t* words = static_cast<volatile uint64_t*>(*area);
  words[0] = SecretOf(0);
  words[1] = 0;
  words[2] = 0;
  std::vector<Holder> others = MakeHolders(2 * kCompartmentKeys, "churn");
  absl::StatusOr<Tainted<uint64_t>> spun;
  std::thread running([&] {
    spun = spinner.box->Call(&SpinOnOwnMemory,
                             reinterpret_cast<uintptr_t>(*area));
  });
  while (words[2] == 0) std::this_thread::yield();
  const int key = spinner.box->pkey();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t + 3);
      for (int k = 0; k < 60; ++k) {
        const size_t i = rng() % others.size();
        others[i].box->Call(&ReadU64, others[i].address()).IgnoreError();
      }
    });
  }
  for (std::thread& w : workers) w.join();
  const bool moved = spinner.box->pkey() != key;
  words[1] = 1;
  running.join();
  if (!spun.ok() || spun->UnverifiedValue("test") != SecretOf(0)) return 1;
  return moved ? 2 : 0;
}

// A compartment whose code is running (not in a callback) keeps its key
// while other threads evict every other compartment in turn: one thread,
// then more threads than keys.
TEST(KeyVirtualisationTest, ARunningCompartmentIsNeverEvicted) {
  for (int threads : {1, kCompartmentKeys + 3}) {
    const internal::KeyCacheStats before = internal::GetKeyCacheStats();
    EXPECT_EQ(ChurnWhileOneSpins(threads), 0) << threads << " threads";
    EXPECT_GT(internal::GetKeyCacheStats().evictions, before.evictions);
  }
}

// The control: with the key cache not asking whether a thread is in a
// compartment, the running one is evicted and its next read of its own
// memory faults. One churning thread, so that no other call is running.
TEST(KeyVirtualisationDeathTest, WithoutTheInUseCheckARunningOneIsEvicted) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::EvictRunningCompartmentsForTesting();
        _exit(ChurnWhileOneSpins(1));
      },
      ::testing::ExitedWithCode(1), "");
}

// Just more compartments than keys, called from several threads: most
// calls are fast-path hits while other threads evict. A thread that passed
// the generation check with a key the cache then gave away would read its
// own secret with the wrong PKRU and fault.
TEST(KeyVirtualisationTest, EvictionsRacingFastPathCallsNeverBreakACall) {
  std::vector<Holder> holders = MakeHolders(kCompartmentKeys + 2, "race");
  ASSERT_EQ(holders.size(), kCompartmentKeys + 2u);
  const internal::KeyCacheStats before = internal::GetKeyCacheStats();
  std::atomic<int> failed{0};
  std::vector<std::thread> workers;
  // More threads than CPUs: some are preempted halfway into the gate.
  for (int t = 0; t < 16; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t + 11);
      for (int k = 0; k < 1000; ++k) {
        // Mostly a thread's own few compartments (hits), sometimes any.
        const size_t i = rng() % 8 == 0 ? rng() % holders.size()
                                        : (t * 3 + rng() % 3) % holders.size();
        absl::StatusOr<Tainted<uint64_t>> r =
            holders[i].box->Call(&ReadU64, holders[i].address());
        if (!r.ok() || r->UnverifiedValue("test") != SecretOf(i)) {
          if (failed.fetch_add(1) < 3) ADD_FAILURE() << i << ": " << r.status();
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(internal::GetKeyCacheStats().evictions, before.evictions);
}

struct Record {
  int key;
  int seq;
};

// "start-end perms" of every mapping in the top GiB of the 4 GiB window
// holding `p`: the compartment's loaded images.
std::vector<std::string> ImageMappings(uintptr_t p) {
  const uintptr_t window = p & ~((uintptr_t{1} << 32) - 1);
  const uintptr_t lo = window + (uintptr_t{3} << 30);
  const uintptr_t hi = window + (uintptr_t{4} << 30);
  std::vector<std::string> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    uintptr_t start = 0;
    std::istringstream(line) >> std::hex >> start;
    if (start >= lo && start < hi) {
      out.push_back(line.substr(0, line.find(' ', line.find(' ') + 1)));
    }
  }
  return out;
}

// Loaded code's pages (code, read-only data, RELRO, data) leave the key
// with the rest of its memory and come back with the same protections.
TEST(KeyVirtualisationTest, LoadedImagesMoveWithTheirProtections) {
  auto box = MakeBox({.name = "loaded"});
  ASSERT_TRUE(box->Load(SORT_PLUGIN).ok());
  auto sort = box->Lookup<void(Record*, size_t)>("sort_records");
  ASSERT_TRUE(sort.ok()) << sort.status();
  const uintptr_t code = reinterpret_cast<uintptr_t>(*sort);
  Record* r = ::mpkbox::testing::Buffer<Record>(box.get(), 100);
  auto sorted = [&] {
    for (int i = 0; i < 100; ++i) r[i] = {100 - i, i};
    if (!box->Call(*sort, r, size_t{100}).ok()) return false;
    for (int i = 1; i < 100; ++i) {
      if (r[i - 1].key > r[i].key) return false;
    }
    return true;
  };
  ASSERT_TRUE(sorted());
  const std::vector<std::string> before = ImageMappings(code);
  ASSERT_GE(before.size(), 2u);
  EXPECT_EQ(internal::PkeyOfAddress(code), box->pkey());
  std::vector<Holder> others = MakeHolders(2 * kCompartmentKeys, "other");
  CallAll(others);
  ASSERT_EQ(box->pkey(), -1);
  EXPECT_EQ(internal::PkeyOfAddress(code), internal::Keys().trusted);
  EXPECT_EQ(ImageMappings(code), before);
  ASSERT_TRUE(sorted());
  EXPECT_GE(box->pkey(), 0);
  EXPECT_EQ(internal::PkeyOfAddress(code), box->pkey());
  EXPECT_EQ(ImageMappings(code), before);
}

TEST(KeyVirtualisationTest, ResetAndDestroyOfAnEvictedCompartment) {
  Holder victim = MakeHolder("victim", 0);
  ASSERT_TRUE(victim.box->Call(&ReadU64, victim.address()).ok());
  std::vector<Holder> others = MakeHolders(2 * kCompartmentKeys, "other");
  CallAll(others);
  ASSERT_EQ(victim.box->pkey(), -1);
  ASSERT_TRUE(victim.box->Reset().ok());
  // Nothing of the old heap survives: its pages read zero.
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, victim.address())), 0u);
  absl::StatusOr<void*> p = victim.box->Allocate(sizeof(uint64_t));
  ASSERT_TRUE(p.ok()) << p.status();
  *static_cast<uint64_t*>(*p) = 77;
  EXPECT_EQ(Value(victim.box->Call(&ReadU64, reinterpret_cast<uintptr_t>(*p))),
            77u);
  CallAll(others);  // evicted again
  ASSERT_EQ(victim.box->pkey(), -1);
  victim.box.reset();
  // Its slot and window serve the next compartment; every key still works.
  Holder next = MakeHolder("next", 0);
  EXPECT_EQ(Value(next.box->Call(&ReadU64, next.address())), SecretOf(0));
  CallAll(others);
}

}  // namespace
}  // namespace mpkbox
