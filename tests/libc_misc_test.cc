// Loaded code's mmap family, locale, regex, process and time functions
// (issue 15, items 4 and 5; runtime/compartment_libc/memory.cc, locale.cc,
// regex.cc, process.cc, time.cc), from a real plugin (plugins/misc_plugin.c)
// with key 0 read-only. The attacks (MAP_FIXED over host memory, munmap of
// what is not the compartment's mapping, PROT_EXEC over a WRPKRU) are made
// from inside and must leave host memory as it was.
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <regex.h>
#include <signal.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

constexpr int kAnon = MAP_PRIVATE | MAP_ANONYMOUS;
constexpr int kRw = PROT_READ | PROT_WRITE;
constexpr size_t kPage = 4096;

// Host memory the attacks aim at (the trusted key from Init on).
alignas(4096) char host_page[4096] = "host page";
volatile long host_target = 1234;

template <typename Fn>
Fn* Get(Compartment* box, const char* name) {
  absl::StatusOr<Fn*> f = box->Lookup<Fn>(name);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : nullptr;
}

class LibcMiscTest : public ::testing::Test {
 protected:
  void SetUp() override {
    box_ = MakeBox({.name = "misc"});
    ASSERT_NE(box_, nullptr);
    ASSERT_TRUE(box_->Load(MISC_PLUGIN).ok());
  }
  template <typename Fn>
  Fn* F(const char* name) {
    return Get<Fn>(box_.get(), name);
  }
  // Addresses travel as integers: Call refuses a host pointer argument
  // before the gate, and these attacks must reach the libc bindings.
  long Map(size_t n, int prot = kRw, int flags = kAnon, const void* addr = nullptr,
           int fd = -1) {
    return Value(box_->Call(F<long(uintptr_t, unsigned long, int, int, int)>(
                                "map_errno"),
                            A(addr), n, prot, flags, fd));
  }
  int Unmap(const void* p, size_t n) {
    return Value(
        box_->Call(F<int(uintptr_t, unsigned long)>("unmap_errno"), A(p), n));
  }
  int Protect(const void* p, size_t n, int prot) {
    return Value(box_->Call(
        F<int(uintptr_t, unsigned long, int)>("protect_errno"), A(p), n, prot));
  }
  int Advise(const void* p, size_t n, int advice) {
    return Value(box_->Call(
        F<int(uintptr_t, unsigned long, int)>("advise_errno"), A(p), n, advice));
  }
  static uintptr_t A(const void* p) { return reinterpret_cast<uintptr_t>(p); }
  std::unique_ptr<Compartment> box_;
};

void* P(long v) { return reinterpret_cast<void*>(v); }

// ---- mmap ----

TEST_F(LibcMiscTest, MmapServesZeroedPagesOfItsOwnHeap) {
  auto use = F<long(unsigned long)>("map_use_unmap");
  for (unsigned long n : {1ul, 4096ul, 3 * 4096ul + 5, 1ul << 20}) {
    long want = 0;
    for (unsigned long i = 0; i < n; ++i) want += static_cast<unsigned char>(i);
    EXPECT_EQ(Value(box_->Call(use, n)), want) << n;
  }
  const size_t before = box_->stats().bytes_in_use;
  const long p = Map(3 * kPage);
  ASSERT_GT(p, 0);
  EXPECT_EQ(p % kPage, 0);
  EXPECT_TRUE(box_->Contains(P(p), 3 * kPage));
  EXPECT_EQ(PkeyOfAddress(static_cast<uintptr_t>(p)), box_->pkey());
  EXPECT_GE(box_->stats().bytes_in_use, before + 3 * kPage);
  // The compartment's free cannot take a mapping; munmap can, once.
  EXPECT_FALSE(box_->TryFree(P(p)).ok());
  EXPECT_EQ(Unmap(P(p), 3 * kPage), 0);
  EXPECT_EQ(box_->stats().bytes_in_use, before);
  EXPECT_EQ(Unmap(P(p), 3 * kPage), -EINVAL);
  // Shared anonymous memory is private memory too (no compartment forks);
  // PROT_NONE and PROT_READ get read-write (mprotect keeps it that way).
  for (int flags : {MAP_SHARED | MAP_ANONYMOUS, kAnon | MAP_NORESERVE}) {
    for (int prot : {PROT_NONE, PROT_READ, kRw}) {
      const long q = Map(kPage, prot, flags);
      ASSERT_GT(q, 0) << flags << " " << prot;
      EXPECT_EQ(Unmap(P(q), kPage), 0);
    }
  }
  EXPECT_EQ(box_->last_fault(), nullptr);
}

// A mapping is no live allocation: the compartment's own free of one ends
// the call as a bad free.
TEST_F(LibcMiscTest, FreeOfAMappingIsABadFree) {
  const long p = Map(kPage);
  ASSERT_GT(p, 0);
  absl::Status s = box_->Call(F<void(void*)>("free_it"), P(p));
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(s.message(), HasSubstr("not a live allocation")) << s;
}

// Two host threads map, fill and unmap in one compartment at once: the
// record and the heap stay consistent.
TEST_F(LibcMiscTest, MappingsFromTwoThreadsAtOnce) {
  auto use = F<long(unsigned long)>("map_use_unmap");
  const size_t before = box_->stats().bytes_in_use;
  auto work = [&](unsigned long n) {
    long want = 0;
    for (unsigned long i = 0; i < n; ++i) want += static_cast<unsigned char>(i);
    for (int i = 0; i < 200; ++i) {
      absl::StatusOr<Tainted<long>> r = box_->Call(use, n);
      if (!r.ok() || r->UnverifiedValue("test") != want) return false;
    }
    return true;
  };
  bool a_ok = false;
  std::thread a([&] { a_ok = work(3 * kPage); });
  const bool b_ok = work(5 * kPage + 17);
  a.join();
  EXPECT_TRUE(a_ok);
  EXPECT_TRUE(b_ok);
  EXPECT_EQ(box_->stats().bytes_in_use, before);
  EXPECT_EQ(box_->last_fault(), nullptr);
}

TEST_F(LibcMiscTest, MmapRefusesFixedAddressesFilesAndExec) {
  const std::string before(host_page);
  void* host = host_page;
  // MAP_FIXED over host memory, over its own heap, and without replacing.
  EXPECT_EQ(Map(kPage, kRw, kAnon | MAP_FIXED, host), -EPERM);
  EXPECT_EQ(Map(kPage, kRw, kAnon | MAP_FIXED_NOREPLACE, host), -EPERM);
  const long own = Map(kPage);
  ASSERT_GT(own, 0);
  EXPECT_EQ(Map(kPage, kRw, kAnon | MAP_FIXED, P(own)), -EPERM);
  // A file, even one the host opened for it.
  const int fd = open("/proc/self/exe", O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Map(kPage, PROT_READ, MAP_PRIVATE, nullptr, fd), -EACCES);
  EXPECT_EQ(Map(kPage, PROT_READ, MAP_SHARED, nullptr, fd), -EACCES);
  close(fd);
  EXPECT_EQ(Map(kPage, PROT_READ | PROT_EXEC), -EPERM);
  EXPECT_EQ(Map(kPage, PROT_EXEC), -EPERM);
  EXPECT_EQ(Map(0), -EINVAL);
  EXPECT_EQ(Map(kPage, kRw, kAnon | MAP_GROWSDOWN), -EINVAL);
  EXPECT_EQ(Map(kPage, kRw, kAnon | MAP_HUGETLB), -EINVAL);
  EXPECT_EQ(Map(kPage, kRw, MAP_ANONYMOUS), -EINVAL);  // neither type
  // Past heap_limit_bytes (64 MiB), and past any size.
  EXPECT_EQ(Map(size_t{128} << 20), -ENOMEM);
  EXPECT_EQ(Map(~size_t{0} - 4096), -ENOMEM);
  // Host memory as it was, still mapped and the host's.
  EXPECT_EQ(std::string(host_page), before);
  EXPECT_NE(PkeyOfAddress(reinterpret_cast<uintptr_t>(host_page)),
            box_->pkey());
  EXPECT_EQ(box_->last_fault(), nullptr);
}

TEST_F(LibcMiscTest, MunmapOnlyTakesItsOwnWholeMappings) {
  const std::string before(host_page);
  EXPECT_EQ(Unmap(host_page, kPage), -EINVAL);
  // Its heap: a page-aligned allocation, as a mapping would be.
  absl::StatusOr<void*> heap = box_->Allocate(2 * kPage, kPage);
  ASSERT_TRUE(heap.ok());
  memset(*heap, 7, 2 * kPage);
  EXPECT_EQ(Unmap(*heap, 2 * kPage), -EINVAL);
  EXPECT_EQ(static_cast<char*>(*heap)[kPage], 7);
  // Its loaded code: the page of one of its functions.
  const auto code = reinterpret_cast<uintptr_t>(F<int()>("plugin_code"));
  void* code_page = P(static_cast<long>(code & ~(kPage - 1)));
  EXPECT_EQ(Unmap(code_page, kPage), -EINVAL);
  EXPECT_EQ(Value(box_->Call(F<int()>("plugin_code"))), 42);
  // A mapping: only whole, from its start.
  const long p = Map(3 * kPage);
  ASSERT_GT(p, 0);
  EXPECT_EQ(Unmap(P(p), kPage), -EINVAL);
  EXPECT_EQ(Unmap(P(p + kPage), 2 * kPage), -EINVAL);
  EXPECT_EQ(Unmap(P(p + 1), 3 * kPage), -EINVAL);
  EXPECT_EQ(Unmap(P(p), 3 * kPage - 100), 0);  // rounded up to the pages
  EXPECT_EQ(std::string(host_page), before);
  EXPECT_EQ(box_->last_fault(), nullptr);
}

TEST_F(LibcMiscTest, MprotectNeverAddsExecOrTakesAwayReadWrite) {
  const long p = Map(2 * kPage);
  ASSERT_GT(p, 0);
  EXPECT_EQ(Protect(P(p), 2 * kPage, kRw), 0);
  EXPECT_EQ(Protect(P(p + kPage), kPage, kRw), 0);
  // Less than read-write would fault the host where it touches the pages.
  EXPECT_EQ(Protect(P(p), kPage, PROT_READ), -EACCES);
  EXPECT_EQ(Protect(P(p), kPage, PROT_NONE), -EACCES);
  for (int prot : {PROT_EXEC, PROT_READ | PROT_EXEC, kRw | PROT_EXEC}) {
    EXPECT_EQ(Protect(P(p), kPage, prot), -EACCES) << prot;
    EXPECT_EQ(Protect(host_page, kPage, prot), -EACCES) << prot;
  }
  // Past its end, unaligned, or anything but its mappings.
  EXPECT_EQ(Protect(P(p), 3 * kPage, kRw), -ENOMEM);
  EXPECT_EQ(Protect(P(p + 8), kPage, kRw), -EINVAL);
  EXPECT_EQ(Protect(host_page, kPage, kRw), -ENOMEM);
  absl::StatusOr<void*> heap = box_->Allocate(kPage, kPage);
  ASSERT_TRUE(heap.ok());
  EXPECT_EQ(Protect(*heap, kPage, kRw), -ENOMEM);
  // Still read-write to both sides.
  static_cast<char*>(P(p))[kPage] = 1;
  EXPECT_EQ(Unmap(P(p), 2 * kPage), 0);
  EXPECT_EQ(box_->last_fault(), nullptr);
}

// The attack PROT_EXEC would allow: a WRPKRU written into a mapping, made
// executable and run, then a write to host memory. mprotect refuses, the
// jump faults (the page is not executable), the host global is unchanged.
TEST_F(LibcMiscTest, WrpkruInAMappingNeverRuns) {
  auto attack = F<int(uintptr_t, int)>("exec_wrpkru");
  const auto target = reinterpret_cast<uintptr_t>(&host_target);
  EXPECT_EQ(Value(box_->Call(attack, target, 0)), -EACCES);
  absl::StatusOr<Tainted<int>> r = box_->Call(attack, target, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("SIGSEGV")) << r.status();
  EXPECT_EQ(host_target, 1234);
  ASSERT_TRUE(box_->Reset().ok());
  absl::StatusOr<Tainted<long>> m =
      box_->Call(F<long(uintptr_t)>("map_exec"), target);
  EXPECT_EQ(Value(m), -EPERM);
  EXPECT_EQ(host_target, 1234);
}

// The same attack with the refusal switched off: it escapes.
TEST(LibcMiscDeathTest, WrpkruInAMappingEscapesWithExecAllowed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::AllowExecutableMappingsForTesting();
        auto box = MakeBox({.name = "exec"});
        if (!box->Load(MISC_PLUGIN).ok()) _exit(1);
        auto attack = Get<int(uintptr_t, int)>(box.get(), "exec_wrpkru");
        absl::StatusOr<Tainted<int>> r = box->Call(
            attack, reinterpret_cast<uintptr_t>(&host_target), 1);
        _exit(r.ok() && host_target == 666 ? ::mpkbox::testing::kEscaped : 2);
      },
      ::testing::ExitedWithCode(::mpkbox::testing::kEscaped), "");
}

TEST_F(LibcMiscTest, MremapMovesOnlyItsOwnMappings) {
  auto remap =
      F<long(uintptr_t, unsigned long, unsigned long, int)>("remap_errno");
  const long p = Map(kPage);
  ASSERT_GT(p, 0);
  memset(P(p), 9, kPage);
  EXPECT_EQ(Value(box_->Call(remap, uintptr_t(p), kPage, 3 * kPage, 0)), -ENOMEM);
  const long q = Value(box_->Call(remap, uintptr_t(p), kPage, 3 * kPage,
                                  MREMAP_MAYMOVE));
  ASSERT_GT(q, 0);
  EXPECT_EQ(static_cast<char*>(P(q))[kPage - 1], 9);
  EXPECT_EQ(static_cast<char*>(P(q))[kPage], 0);
  EXPECT_EQ(Unmap(P(p), kPage), -EINVAL);  // gone
  // Shrinks in place; pages that come back read zero.
  memset(P(q), 5, 3 * kPage);
  EXPECT_EQ(Value(box_->Call(remap, uintptr_t(q), 3 * kPage, kPage, 0)), q);
  EXPECT_EQ(Value(box_->Call(remap, uintptr_t(q), kPage, 2 * kPage, 0)), q);
  EXPECT_EQ(static_cast<char*>(P(q))[kPage], 0);
  EXPECT_EQ(static_cast<char*>(P(q))[0], 5);
  EXPECT_EQ(Value(box_->Call(remap, uintptr_t(q), 2 * kPage, kPage,
                             MREMAP_MAYMOVE | MREMAP_FIXED)),
            -EINVAL);
  EXPECT_EQ(Value(box_->Call(remap, A(host_page), kPage, 2 * kPage,
                             MREMAP_MAYMOVE)),
            -EFAULT);
  EXPECT_EQ(Unmap(P(q), 2 * kPage), 0);
  EXPECT_EQ(box_->last_fault(), nullptr);
}

TEST_F(LibcMiscTest, MadviseDropsPagesOfItsOwnMappingsOnly) {
  const long p = Map(2 * kPage);
  ASSERT_GT(p, 0);
  memset(P(p), 3, 2 * kPage);
  for (int advice : {MADV_NORMAL, MADV_WILLNEED, MADV_FREE, MADV_DONTDUMP}) {
    EXPECT_EQ(Advise(P(p), 2 * kPage, advice), 0) << advice;
  }
  EXPECT_EQ(static_cast<char*>(P(p))[0], 3);
  EXPECT_EQ(Advise(P(p + kPage), kPage, MADV_DONTNEED), 0);
  EXPECT_EQ(static_cast<char*>(P(p))[0], 3);
  EXPECT_EQ(static_cast<char*>(P(p))[kPage], 0);
  EXPECT_EQ(PkeyOfAddress(static_cast<uintptr_t>(p + kPage)), box_->pkey());
  // Elsewhere it would drop the loader's private copy of a code page (back
  // to the file's bytes), or host memory.
  const auto code = reinterpret_cast<uintptr_t>(F<int()>("plugin_code"));
  EXPECT_EQ(Advise(P(static_cast<long>(code & ~(kPage - 1))), kPage,
                   MADV_DONTNEED),
            -EINVAL);
  const std::string before(host_page);
  EXPECT_EQ(Advise(host_page, kPage, MADV_DONTNEED), -EINVAL);
  EXPECT_EQ(std::string(host_page), before);
  EXPECT_EQ(Advise(P(p), kPage, MADV_REMOVE), -EINVAL);
  EXPECT_EQ(Advise(P(p + 1), kPage, MADV_NORMAL), -EINVAL);
  auto posix = F<int(void*, unsigned long, int)>("posix_advise");
  EXPECT_EQ(Value(box_->Call(posix, P(p), kPage, POSIX_MADV_DONTNEED)), 0);
  EXPECT_EQ(static_cast<char*>(P(p))[0], 3);  // glibc's DONTNEED drops nothing
  EXPECT_EQ(Value(box_->Call(posix, P(p), kPage, 99)), EINVAL);
  EXPECT_EQ(Unmap(P(p), 2 * kPage), 0);
}

// The host can take mmap away with a rule for SYS_mmap.
TEST(LibcMiscPolicyTest, PolicyCanDenyOrFailMmap) {
  auto denied = MakeBox({.name = "no-mmap",
                         .syscalls = SyscallPolicy().Deny(SYS_mmap, ENOMEM)});
  ASSERT_TRUE(denied->Load(MISC_PLUGIN).ok());
  auto use = Get<long(unsigned long)>(denied.get(), "map_use_unmap");
  EXPECT_EQ(Value(denied->Call(use, 4096ul)), -ENOMEM);
  auto failed = MakeBox({.name = "fail-mmap",
                         .syscalls = SyscallPolicy().Fail(SYS_mmap)});
  ASSERT_TRUE(failed->Load(MISC_PLUGIN).ok());
  absl::Status s =
      failed->Call(Get<long(unsigned long)>(failed.get(), "map_use_unmap"),
                   4096ul)
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr("mmap")) << s;
}

TEST_F(LibcMiscTest, ResetForgetsItsMappings) {
  const long p = Map(kPage);
  ASSERT_GT(p, 0);
  ASSERT_TRUE(box_->Reset().ok());
  EXPECT_EQ(Unmap(P(p), kPage), -EINVAL);
  const long q = Map(kPage);
  ASSERT_GT(q, 0);
  EXPECT_EQ(static_cast<char*>(P(q))[0], 0);
  EXPECT_EQ(Unmap(P(q), kPage), 0);
}

// ---- locale ----

TEST_F(LibcMiscTest, LocaleIsCAndNothingElse) {
  auto set = F<const char*(int, const char*)>("set_locale");
  char* name = Buffer<char>(box_.get(), 32);
  for (const char* c : {"C", "POSIX", ""}) {
    strcpy(name, c);
    EXPECT_STREQ(Value(box_->Call(set, LC_ALL, name)), "C") << c;
  }
  EXPECT_STREQ(Value(box_->Call(set, LC_CTYPE, static_cast<char*>(nullptr))),
               "C");
  strcpy(name, "en_US.UTF-8");
  EXPECT_EQ(Value(box_->Call(set, LC_ALL, name)), nullptr);
  EXPECT_STREQ(Value(box_->Call(F<const char*()>("decimal_point"))), ".");
  locale_t c = newlocale(LC_ALL_MASK, "C", nullptr);
  for (nl_item item : {CODESET, D_T_FMT, DAY_1, MON_12, RADIXCHAR, YESEXPR}) {
    EXPECT_STREQ(Value(box_->Call(F<const char*(int)>("langinfo"), item)),
                 nl_langinfo_l(item, c))
        << item;
  }
  EXPECT_EQ(Value(box_->Call(F<int()>("locale_object_errors"))), 0);
  EXPECT_EQ(Value(box_->Call(F<int()>("multibyte_errors"))), 0);
  EXPECT_EQ(box_->last_fault(), nullptr);
}

// ---- regex ----

TEST_F(LibcMiscTest, RegcompAndRegexecMatchLikeNative) {
  auto match =
      F<int(const char*, const char*, int*, char*, unsigned long)>(
          "regex_match");
  char* pattern = Buffer<char>(box_.get(), 64);
  char* text = Buffer<char>(box_.get(), 64);
  int* offsets = Buffer<int>(box_.get(), 4);
  char* err = Buffer<char>(box_.get(), 128);
  const size_t before = box_->stats().bytes_in_use;
  struct Case {
    const char* pattern;
    const char* text;
  };
  for (const Case& k : {Case{"([a-z]+)@example\\.(com|org)", "mail bob@example.org now"},
                        Case{"^[0-9]{3}-([0-9]{4})$", "555-1234"},
                        Case{"x(y", "xy"}, Case{"abc", "xyz"}}) {
    strcpy(pattern, k.pattern);
    strcpy(text, k.text);
    memset(offsets, -1, 4 * sizeof(int));
    err[0] = '\0';
    const int inside = Value(box_->Call(match, pattern, text, offsets, err, 128ul));
    // Native.
    regex_t re;
    int native = regcomp(&re, k.pattern, REG_EXTENDED);
    char native_err[128] = "";
    int native_offsets[4] = {-1, -1, -1, -1};
    if (native == 0) {
      regmatch_t m[2];
      native = regexec(&re, k.text, 2, m, 0);
      if (native == 0) {
        native_offsets[0] = static_cast<int>(m[0].rm_so);
        native_offsets[1] = static_cast<int>(m[0].rm_eo);
        native_offsets[2] = static_cast<int>(m[1].rm_so);
        native_offsets[3] = static_cast<int>(m[1].rm_eo);
      } else {
        regerror(native, &re, native_err, sizeof(native_err));
      }
      regfree(&re);
    } else {
      regerror(native, &re, native_err, sizeof(native_err));
    }
    EXPECT_EQ(inside, native) << k.pattern;
    EXPECT_STREQ(err, native_err) << k.pattern;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(offsets[i], native_offsets[i]) << k.pattern;
  }
  EXPECT_EQ(box_->last_fault(), nullptr);
  EXPECT_LE(box_->stats().bytes_in_use, before + 64 * 1024);  // cached only
}

// ---- process ----

TEST_F(LibcMiscTest, SysconfAndGetauxvalAnswerHarmlessQuestions) {
  auto sc = F<long(int)>("sysconf_errno");
  EXPECT_EQ(Value(box_->Call(sc, _SC_PAGESIZE)), sysconf(_SC_PAGESIZE));
  EXPECT_EQ(Value(box_->Call(sc, _SC_NPROCESSORS_ONLN)),
            sysconf(_SC_NPROCESSORS_ONLN));
  EXPECT_EQ(Value(box_->Call(sc, _SC_CLK_TCK)), sysconf(_SC_CLK_TCK));
  EXPECT_EQ(Value(box_->Call(sc, _SC_OPEN_MAX)), sysconf(_SC_OPEN_MAX));
  EXPECT_EQ(Value(box_->Call(sc, _SC_PASS_MAX)), -EINVAL);  // not listed
  EXPECT_EQ(Value(box_->Call(sc, 1 << 20)), -EINVAL);
  EXPECT_EQ(Value(box_->Call(F<int()>("page_size"))), getpagesize());
  EXPECT_EQ(Value(box_->Call(F<long()>("get_pid"))), getpid());

  auto aux = F<unsigned long(unsigned long, int*)>("auxval");
  int* err = Buffer<int>(box_.get());
  for (unsigned long type : {0ul + AT_PAGESZ, 0ul + AT_HWCAP, 0ul + AT_HWCAP2,
                             0ul + AT_CLKTCK, 0ul + AT_SECURE}) {
    *err = -1;
    errno = 0;
    const unsigned long native = getauxval(type);
    const int native_errno = errno;  // ENOENT where the kernel gives none
    EXPECT_EQ(Value(box_->Call(aux, type, err)), native) << type;
    EXPECT_EQ(*err, native_errno) << type;
  }
  // AT_RANDOM seeds the host's canary and points into its stack; the
  // others are addresses of the host.
  for (unsigned long type :
       {0ul + AT_RANDOM, 0ul + AT_PHDR, 0ul + AT_BASE, 0ul + AT_ENTRY,
        0ul + AT_SYSINFO_EHDR, 0ul + AT_EXECFN, 0ul + AT_PLATFORM, 12345ul}) {
    *err = 0;
    EXPECT_EQ(Value(box_->Call(aux, type, err)), 0ul) << type;
    EXPECT_EQ(*err, ENOENT) << type;
  }
  EXPECT_EQ(box_->last_fault(), nullptr);
}

// exit(3) inside ends the call, not the process: a fault report that names
// the function and the status; the compartment works again after Reset.
TEST_F(LibcMiscTest, ExitEndsTheCallWithItsStatus) {
  auto exit_with = F<void(int, int)>("exit_with");
  struct Case {
    int how;
    int status;
    const char* name;
  };
  for (const Case& k : {Case{0, 3, "exit"}, Case{1, 5, "_exit"},
                        Case{2, 0, "_Exit"}, Case{3, -1, "quick_exit"}}) {
    absl::Status s = box_->Call(exit_with, k.how, k.status);
    ASSERT_FALSE(s.ok()) << k.name;
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_THAT(s.message(),
                HasSubstr(std::string(k.name) + "(" + std::to_string(k.status) +
                          ")"));
    EXPECT_THAT(s.message(), HasSubstr("misc"));
    ASSERT_NE(box_->last_fault(), nullptr);
    EXPECT_EQ(box_->last_fault()->exit_status, k.status);
    EXPECT_THAT(box_->last_fault()->backtrace.front(), HasSubstr("exit_with"));
    EXPECT_FALSE(box_->Call(F<int()>("plugin_code")).ok());  // until Reset
    ASSERT_TRUE(box_->Reset().ok());
    EXPECT_EQ(Value(box_->Call(F<int()>("plugin_code"))), 42);
  }
  EXPECT_EQ(host_target, 1234);
}

// ---- time ----

TEST_F(LibcMiscTest, BrokenDownTimeIsUtcLikeNativeGmtime) {
  auto broken = F<int(long, struct tm*, int)>("broken_down");
  auto from = F<long(struct tm*, int)>("from_broken_down");
  struct tm* tm = Buffer<struct tm>(box_.get());
  for (long t : {0l, 1l, -1l, 951782400l /* 2000-02-29 */, 1700000000l,
                 4102444800l /* 2100-01-01 */, -2208988800l /* 1900 */}) {
    struct tm native;
    time_t tt = t;
    ASSERT_NE(gmtime_r(&tt, &native), nullptr);
    for (int local : {0, 1}) {
      ASSERT_EQ(Value(box_->Call(broken, t, tm, local)), 0) << t;
      EXPECT_EQ(tm->tm_year, native.tm_year) << t;
      EXPECT_EQ(tm->tm_mon, native.tm_mon) << t;
      EXPECT_EQ(tm->tm_mday, native.tm_mday) << t;
      EXPECT_EQ(tm->tm_hour, native.tm_hour) << t;
      EXPECT_EQ(tm->tm_min, native.tm_min) << t;
      EXPECT_EQ(tm->tm_sec, native.tm_sec) << t;
      EXPECT_EQ(tm->tm_wday, native.tm_wday) << t;
      EXPECT_EQ(tm->tm_yday, native.tm_yday) << t;
      EXPECT_EQ(tm->tm_isdst, 0);
      EXPECT_EQ(tm->tm_gmtoff, 0);
      EXPECT_STREQ(tm->tm_zone, local ? "UTC" : "GMT");
      EXPECT_EQ(Value(box_->Call(from, tm, local)), t);
    }
  }
  // Out-of-range fields carry, as timegm's do.
  struct tm odd = {};
  odd.tm_year = 124;
  odd.tm_mon = 0;
  odd.tm_mday = 32;
  odd.tm_hour = 25;
  odd.tm_sec = -1;
  *tm = odd;
  struct tm native = odd;
  EXPECT_EQ(Value(box_->Call(from, tm, 0)), timegm(&native));
  EXPECT_EQ(tm->tm_mon, native.tm_mon);
  EXPECT_EQ(tm->tm_mday, native.tm_mday);
  EXPECT_EQ(tm->tm_hour, native.tm_hour);
  EXPECT_EQ(tm->tm_sec, native.tm_sec);
  EXPECT_EQ(tm->tm_wday, native.tm_wday);
  // Past an int's years.
  EXPECT_EQ(Value(box_->Call(broken, 0x7fffffffffffffffl, tm, 0)), -EOVERFLOW);
  EXPECT_EQ(box_->last_fault(), nullptr);
}

TEST_F(LibcMiscTest, StrftimeFormatsInTheCLocale) {
  auto broken = F<int(long, struct tm*, int)>("broken_down");
  auto format =
      F<unsigned long(char*, unsigned long, const char*, const struct tm*)>(
          "format_time");
  struct tm* tm = Buffer<struct tm>(box_.get());
  char* out = Buffer<char>(box_.get(), 256);
  char* fmt = Buffer<char>(box_.get(), 128);
  const long t = 1700000000;  // 2023-11-14 22:13:20 UTC, a Tuesday
  ASSERT_EQ(Value(box_->Call(broken, t, tm, 1)), 0);
  strcpy(fmt, "%Y-%m-%d %H:%M:%S %Z %z %a %b %j %U %c %% %s|%-s");
  const unsigned long n = Value(box_->Call(format, out, 256ul, fmt, tm));
  EXPECT_STREQ(out,
               "2023-11-14 22:13:20 UTC +0000 Tue Nov 318 46 "
               "Tue Nov 14 22:13:20 2023 % 1700000000|1700000000");
  EXPECT_EQ(n, strlen(out));
  // Without a zone name (%Z would have called tzset).
  tm->tm_zone = nullptr;
  strcpy(fmt, "[%Z]");
  Value(box_->Call(format, out, 256ul, fmt, tm));
  EXPECT_STREQ(out, "[UTC]");
  EXPECT_EQ(Value(box_->Call(format, out, 4ul, fmt, tm)), 0ul);  // too small
  char* buf = Buffer<char>(box_.get(), 32);
  EXPECT_STREQ(Value(box_->Call(F<char*(long, char*)>("ctime_of"), t, buf)),
               "Tue Nov 14 22:13:20 2023\n");
  EXPECT_EQ(box_->last_fault(), nullptr);
}

}  // namespace
}  // namespace mpkbox
