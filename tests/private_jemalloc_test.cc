// Compartment heaps on mpkbox's private jemalloc (allocator/jemalloc_instance.h;
// this binary links private_jemalloc_first.cc): they really come from it,
// and a fork while threads allocate inside keeps both jemallocs usable in the
// child (each instance has its own fork handlers). heap_test, lifecycle_test
// and heap_attack_cache_test run again on the private instance too
// (tests/CMakeLists.txt).
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "allocator/jemalloc_instance.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::internal::kPrivateJemalloc;
using ::mpkbox::internal::kSystemJemalloc;
using ::mpkbox::testing::Churn;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

unsigned Arenas(const internal::JemallocInstance& je) {
  unsigned n = 0;
  size_t len = sizeof(n);
  EXPECT_EQ(je.mallctl("arenas.narenas", &n, &len, nullptr, 0), 0);
  return n;
}

TEST(PrivateJemallocTest, NewHeapsComeFromThePrivateInstance) {
  auto first = MakeBox({.name = "first"});  // the host's arenas exist now
  const unsigned system_before = Arenas(kSystemJemalloc);
  const unsigned private_before = Arenas(kPrivateJemalloc);
  auto box = MakeBox({.name = "private"});
  EXPECT_EQ(Arenas(kPrivateJemalloc), private_before + 1);
  EXPECT_EQ(Arenas(kSystemJemalloc), system_before);
  EXPECT_NE(Value(box->Call(&Churn, 2000)), 0u);
}

// Threads churn inside compartments (refills, flushes and Resets reach the
// private jemalloc) while the host forks. Each child uses both jemallocs:
// had the private one no fork handlers of its own, a lock a worker held in
// it would stay locked in the child. (mpkbox's own locks have none: the
// child uses no compartment, as POSIX allows only async-signal-safe calls
// after a multithreaded fork; both jemallocs go beyond that.)
TEST(PrivateJemallocTest, ForkWhileThreadsAllocateInside) {
  constexpr int kThreads = 3;
  // The child allocates in an arena made and warmed here: jemalloc 5.3's
  // fork handlers do not take its radix tree's init lock (no rtree prefork),
  // so a child that maps new address space can wait forever on a lock a
  // worker held at the fork (seen: a hang in rtree_leaf_elm_lookup_hard).
  // That is jemalloc's, in both instances; the extents here are known to it.
  unsigned arena = 0;
  size_t len = sizeof(arena);
  ASSERT_EQ(kPrivateJemalloc.mallctl("arenas.create", &arena, &len, nullptr, 0),
            0);
  {
    std::vector<void*> warm;
    for (int i = 0; i < 1000; ++i) {
      warm.push_back(kPrivateJemalloc.mallocx(
          16 + i * 64, MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE));
    }
    for (void* p : warm) kPrivateJemalloc.dallocx(p, MALLOCX_TCACHE_NONE);
  }
  std::vector<std::unique_ptr<Compartment>> boxes;
  for (int i = 0; i < kThreads; ++i) boxes.push_back(MakeBox({}));
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      for (int round = 0; !stop.load(); ++round) {
        if (Value(boxes[i]->Call(&Churn, 500)) == 0) failed.fetch_add(1);
        if (round % 16 == 15 && !boxes[i]->Reset().ok()) failed.fetch_add(1);
        free(malloc(100 + round % 1000));  // the host heap, in between
      }
    });
  }
  for (int f = 0; f < 20; ++f) {
    usleep(2000);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      bool ok = true;
      for (int i = 0; ok && i < 1000; ++i) {
        void* p = kPrivateJemalloc.mallocx(
            16 + i * 64, MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE);
        void* q = malloc(16 + i * 64);
        ok = p != nullptr && q != nullptr;
        kPrivateJemalloc.dallocx(p, MALLOCX_TCACHE_NONE);
        free(q);
      }
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "fork " << f << ": status " << status;
  }
  stop.store(true);
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(failed.load(), 0);
}

}  // namespace
}  // namespace mpkbox
