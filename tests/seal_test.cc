// Sealing (mseal, Linux 6.10+): the runtime's mappings that must never
// change, the gate's and signal entry's code, the selector pages and the
// import trap region, refuse munmap, mprotect, pkey_mprotect, mremap and a
// fixed mmap over them, even from the host. Compartments cannot make these
// calls at all (syscall_test); this is what stays true if host code is
// tricked into making them.
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/keys/seal.h"
#include "runtime/loader/import_policy.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"
#include "trampolines/trampolines.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

constexpr size_t kPage = 4096;

char* PageOf(const void* p) {
  return reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) &
                                 ~uintptr_t{kPage - 1});
}

struct Region {
  const char* name;
  char* page;
};

// The sealed ranges, after a call prepared this thread.
std::vector<Region> SealedRegions() {
  // sigaction: a libc function loaded code may not call, bound to a trap.
  internal::HostImport trap = internal::BindHostImport("sigaction", "");
  return {
      {"gate code", PageOf(mpkbox_gate_landing)},
      {"signal entry code", PageOf(mpkbox_signal_begin)},
      {"selector page", PageOf(mpkbox_tls_thread)},
      {"import trap region", PageOf(reinterpret_cast<void*>(trap.address))},
  };
}

// Each change a sealed range refuses: 0 when the kernel made it.
struct Change {
  const char* name;
  int (*make)(char* page);
};
char* g_elsewhere;  // a free page mremap may move to
const Change kChanges[] = {
    {"munmap", [](char* p) { return munmap(p, kPage); }},
    {"mprotect",
     [](char* p) { return mprotect(p, kPage, PROT_READ | PROT_WRITE); }},
    {"pkey_mprotect",
     [](char* p) {
       return static_cast<int>(syscall(SYS_pkey_mprotect, p, kPage,
                                       PROT_READ | PROT_WRITE, 0));
     }},
    {"mremap (move)",
     [](char* p) {
       return mremap(p, kPage, kPage, MREMAP_MAYMOVE | MREMAP_FIXED,
                     g_elsewhere) == MAP_FAILED
                  ? -1
                  : 0;
     }},
    {"mremap (grow)",
     [](char* p) {
       return mremap(p, kPage, 2 * kPage, MREMAP_MAYMOVE) == MAP_FAILED ? -1
                                                                       : 0;
     }},
    {"mmap over it",
     [](char* p) {
       return mmap(p, kPage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
                   0) == MAP_FAILED
                  ? -1
                  : 0;
     }},
};

void MapElsewhere() {
  g_elsewhere = static_cast<char*>(mmap(nullptr, kPage, PROT_NONE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
}

int Twice(int x) { return 2 * x; }

TEST(SealTest, HostCannotChangeSealedRanges) {
  auto box = MakeBox({.name = "sealed"});
  ASSERT_EQ(Value(box->Call(&Twice, 21)), 42);  // this thread is prepared
  if (!internal::SealingAvailable()) {
    GTEST_SKIP() << "this kernel has no mseal (before Linux 6.10)";
  }
  MapElsewhere();
  for (const Region& r : SealedRegions()) {
    ASSERT_NE(r.page, nullptr) << r.name;
    std::vector<char> before;
    const bool readable = r.page != PageOf(SealedRegions()[3].page);
    if (readable) before.assign(r.page, r.page + kPage);
    for (const Change& c : kChanges) {
      errno = 0;
      EXPECT_EQ(c.make(r.page), -1) << c.name << " of the " << r.name;
      EXPECT_EQ(errno, EPERM) << c.name << " of the " << r.name;
    }
    if (readable) {
      EXPECT_EQ(memcmp(before.data(), r.page, kPage), 0) << r.name;
    }
  }
  // The gates and the process still work.
  EXPECT_EQ(Value(box->Call(&Twice, 4)), 8);
}

// Without sealing, the host's own calls change them: here the gate's code
// page becomes writable, and the import trap region goes away.
TEST(SealDeathTest, WithoutSealingTheHostChangesThem) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSealingForTesting();
        auto box = MakeBox({.name = "unsealed"});
        if (!box->Call(&Twice, 1).ok()) _exit(1);
        MapElsewhere();
        const std::vector<Region> regions = SealedRegions();
        if (mprotect(regions[0].page, kPage,
                     PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
          _exit(2);
        }
        for (const Change& c : kChanges) {
          if (c.make(regions[3].page) != 0) _exit(3);
          // Put a trap page back for the next change.
          mmap(regions[3].page, kPage, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        }
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// A sealed selector block cannot be unmapped when its thread exits: the
// next thread takes it over, so threads that come and go leak nothing.
TEST(SealTest, ExitedThreadsBlocksAreReused) {
  auto box = MakeBox({.name = "threads"});
  auto one_thread = [&] {
    std::thread t([&] { EXPECT_EQ(Value(box->Call(&Twice, 3)), 6); });
    t.join();
  };
  for (int i = 0; i < 3; ++i) one_thread();  // warm: pools and arenas
  const int before = testing::CountMappings();
  for (int i = 0; i < 40; ++i) one_thread();
  EXPECT_LE(testing::CountMappings(), before + 4);
}

}  // namespace
}  // namespace mpkbox
