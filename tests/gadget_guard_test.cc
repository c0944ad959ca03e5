// The stray privileged instructions of the process (libc's WRPKRU in
// pkey_set, ld.so's XRSTORs, a library dlopen'ed later) are guarded by
// hardware breakpoints: compartment code that jumps to them is stopped
// before they run, host code still runs them. Each attack is also run with
// the guards off, in a child, to show it would escape.
#include <dlfcn.h>
#include <elf.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/gadget_guard.h"
#include "runtime/keys/pku.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::FindBytes;
using ::mpkbox::testing::JumpAndWrite;
using ::mpkbox::testing::MakeBox;

constexpr int kEscaped = 42;

// The executable segment of the mapped object whose ELF header is at `base`.
std::pair<const char*, const char*> TextOf(uintptr_t base) {
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  const auto* ph = reinterpret_cast<const Elf64_Phdr*>(base + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X)) {
      const char* lo = reinterpret_cast<const char*>(base + ph[i].p_vaddr);
      return {lo, lo + ph[i].p_memsz};
    }
  }
  return {nullptr, nullptr};
}

// The WRPKRU inside libc's pkey_set.
uintptr_t LibcWrpkru() {
  const char* f = reinterpret_cast<const char*>(dlsym(RTLD_DEFAULT, "pkey_set"));
  if (f == nullptr) return 0;
  std::vector<uintptr_t> hits = testing::FindWrpkru(f, f + 256);
  return hits.empty() ? 0 : hits.front();
}

// ld.so's XRSTORs (0f ae /5, memory operand; the 0f may be int3 by now).
std::vector<uintptr_t> LoaderXrstors() {
  auto [lo, hi] = TextOf(getauxval(AT_BASE));
  std::vector<uintptr_t> sites;
  if (lo == nullptr) return sites;
  for (uintptr_t p : FindBytes(lo + 1, hi, {0xae})) {
    const uint8_t escape = reinterpret_cast<const uint8_t*>(p)[-1];
    const uint8_t modrm = reinterpret_cast<const uint8_t*>(p)[1];
    if ((escape == 0x0f || escape == 0xcc) && ((modrm >> 3) & 7) == 5 &&
        (modrm >> 6) != 3) {
      sites.push_back(p - 1);
    }
  }
  return sites;
}

class GadgetGuardTest : public testing::GuardedJumpTest {};

TEST_F(GadgetGuardTest, LibcAndLoaderSitesAreGuarded) {
  const uintptr_t wrpkru = LibcWrpkru();
  ASSERT_NE(wrpkru, 0u);
  ASSERT_NE(internal::GuardedEntryAt(wrpkru), nullptr);
  EXPECT_THAT(internal::GuardedEntryAt(wrpkru),
              ::testing::HasSubstr("WRPKRU in libc.so.6"));
  const std::vector<uintptr_t> xrstors = LoaderXrstors();
  ASSERT_EQ(xrstors.size(), 2u);  // DESIGN.md 5: ld.so's lazy binding
  for (uintptr_t x : xrstors) {
    ASSERT_NE(internal::GuardedEntryAt(x), nullptr) << std::hex << x;
    EXPECT_THAT(internal::GuardedEntryAt(x), ::testing::HasSubstr("XRSTOR"));
  }
}

TEST_F(GadgetGuardTest, JumpToLibcWrpkruIsStopped) {
  auto box = MakeBox({.name = "jumper"});
  testing::ExpectJumpStopped(box.get(), LibcWrpkru(), "WRPKRU in libc.so.6");
}

TEST_F(GadgetGuardTest, ControlWithoutGuardsTheJumpEscapes) {
  auto box = MakeBox({.name = "control"});
  EXPECT_EXIT(
      {
        internal::DisableGadgetGuardsForTesting();
        static_cast<void>(box->Call(&JumpAndWrite, LibcWrpkru()));
        _exit(mpkbox_test_guard_target == 666 ? kEscaped : 0);
      },
      ::testing::ExitedWithCode(kEscaped), "");
}

TEST_F(GadgetGuardTest, JumpToLoaderXrstorIsStopped) {
  auto box = MakeBox({.name = "xrstor"});
  for (uintptr_t x : LoaderXrstors()) {
    absl::Status s = box->Call(&JumpAndWrite, x);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_THAT(std::string(s.message()),
                ::testing::HasSubstr("jumped to XRSTOR in ld-linux"));
    EXPECT_EQ(mpkbox_test_guard_target, 1234u);
    ASSERT_TRUE(box->Reset().ok());
  }
}

TEST_F(GadgetGuardTest, HostCodeStillRunsGuardedInstructions) {
  auto box = MakeBox({.name = "host"});
  ASSERT_TRUE(box->Call(+[] {}).ok());  // this thread has its breakpoints
  // libc's pkey_set runs its WRPKRU: the breakpoint lets host code through.
  EXPECT_EQ(pkey_set(box->pkey(), PKEY_DISABLE_WRITE), 0);
  EXPECT_NE(internal::ReadPkru(), 0u);
  EXPECT_EQ(pkey_set(box->pkey(), 0), 0);
  EXPECT_EQ(internal::ReadPkru(), 0u);
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

TEST_F(GadgetGuardTest, EveryThreadThatEntersIsGuarded) {
  std::vector<std::unique_ptr<Compartment>> boxes;
  for (int i = 0; i < 3; ++i) boxes.push_back(MakeBox({.name = "thread"}));
  std::vector<absl::StatusCode> codes(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&boxes, &codes, i] {
      codes[i] = boxes[i]->Call(&JumpAndWrite, LibcWrpkru()).code();
    });
  }
  for (std::thread& t : threads) t.join();
  for (absl::StatusCode c : codes) EXPECT_EQ(c, absl::StatusCode::kAborted);
  EXPECT_EQ(mpkbox_test_guard_target, 1234u);
}

TEST_F(GadgetGuardTest, ForkedChildIsGuardedToo) {
  auto box = MakeBox({.name = "forked"});
  ASSERT_TRUE(box->Call(+[] {}).ok());
  GTEST_FLAG_SET(death_test_style, "fast");  // the child must be a fork
  EXPECT_EXIT(
      {
        absl::Status s = box->Call(&JumpAndWrite, LibcWrpkru());
        _exit(s.code() == absl::StatusCode::kAborted &&
                      mpkbox_test_guard_target == 1234
                  ? 0
                  : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// A library the host loads later brings a WRPKRU: guarded from the next Call.
TEST_F(GadgetGuardTest, LibraryLoadedLaterIsGuarded) {
  auto box = MakeBox({.name = "late"});
  ASSERT_TRUE(box->Call(+[] {}).ok());
  void* lib = dlopen(LATE_GADGET_LIB, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  const char* fn =
      reinterpret_cast<const char*>(dlsym(lib, "late_gadget_wrpkru"));
  ASSERT_NE(fn, nullptr);
  std::vector<uintptr_t> hits = testing::FindWrpkru(fn, fn + 64);
  ASSERT_FALSE(hits.empty());
  EXPECT_NE(internal::GuardedEntryAt(hits.front()), nullptr);
  absl::Status s = box->Call(&JumpAndWrite, hits.front());
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("late_gadget"));
  EXPECT_EQ(mpkbox_test_guard_target, 1234u);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_TRUE(box->Call(+[] {}).ok());

  // One more entry point than debug registers: calls are refused, saying
  // why, rather than run unguarded. (In a child: it poisons the process.)
  EXPECT_EXIT(
      {
        void* extra = dlopen(LATE_GADGET_EXTRA_LIB, RTLD_NOW | RTLD_LOCAL);
        absl::Status refused = box->Call(+[] {});
        _exit(extra != nullptr &&
                      refused.code() == absl::StatusCode::kFailedPrecondition &&
                      refused.message().find("hardware breakpoints") !=
                          absl::string_view::npos
                  ? 0
                  : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace mpkbox
