// CompartmentPool (include/mpkbox/compartment_pool.h): leases, the Reset at
// each lease's end, waiting, and replacement of a compartment that cannot be
// reset (FailNextResetForTesting makes a Reset fail). The loaded plugin is
// tests/plugins/la_data.c: a counter in .data and a constructor that counts
// its runs.
#include "mpkbox/compartment_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/testing_switches.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::testing {
namespace {

using ::testing::HasSubstr;

CompartmentPool::Options LaDataPool(size_t size) {
  return {.compartment = {.name = "pooled"},
          .size = size,
          .setup = [](Compartment& c) {
            return c.Load(loader_attack::Plugin("la_data"));
          }};
}

std::unique_ptr<CompartmentPool> MakePool(size_t size) {
  absl::StatusOr<std::unique_ptr<CompartmentPool>> pool =
      CompartmentPool::Create(LaDataPool(size));
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

int Bump(Compartment& c) {
  auto fn = c.Lookup<int()>("la_bump_counter");
  EXPECT_TRUE(fn.ok()) << fn.status();
  return fn.ok() ? Value(c.Call(*fn)) : -1;
}

TEST(CompartmentPoolTest, EachLeaseStartsFromTheLoadedState) {
  auto pool = MakePool(1);
  ASSERT_NE(pool, nullptr);
  for (int round = 0; round < 3; ++round) {
    absl::StatusOr<CompartmentPool::Lease> box = pool->Acquire();
    ASSERT_TRUE(box.ok()) << box.status();
    EXPECT_EQ((*box)->name(), "pooled-0");
    // The counter starts at 41 in .data: what the last lease did is gone.
    EXPECT_EQ(Bump(**box), 42);
    EXPECT_EQ(Bump(**box), 43);
  }
  EXPECT_TRUE(pool->last_error().ok());
}

TEST(CompartmentPoolTest, TryAcquireSaysWhenAllAreOnLoan) {
  auto pool = MakePool(2);
  ASSERT_NE(pool, nullptr);
  auto a = pool->TryAcquire();
  auto b = pool->TryAcquire();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(&**a, &**b);
  EXPECT_EQ(pool->available(), 0u);
  absl::StatusOr<CompartmentPool::Lease> c = pool->TryAcquire();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("on loan"));
  absl::StatusOr<CompartmentPool::Lease> d =
      pool->Acquire(absl::Milliseconds(20));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDeadlineExceeded);
  { CompartmentPool::Lease gone = *std::move(a); }
  EXPECT_EQ(pool->available(), 1u);
  EXPECT_TRUE(pool->TryAcquire().ok());
}

TEST(CompartmentPoolTest, ThreadsShareAFewCompartments) {
  auto pool = MakePool(3);
  ASSERT_NE(pool, nullptr);
  std::atomic<int> wrong{0};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        absl::StatusOr<CompartmentPool::Lease> box = pool->Acquire();
        if (!box.ok() || Bump(**box) != 42 || Bump(**box) != 43) ++wrong;
        ++done;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(done.load(), 300);
  EXPECT_EQ(pool->available(), 3u);
}

void Crash() { __builtin_trap(); }

TEST(CompartmentPoolTest, AFaultingRequestLeavesAWorkingCompartment) {
  auto pool = MakePool(1);
  ASSERT_NE(pool, nullptr);
  {
    auto box = pool->Acquire();
    ASSERT_TRUE(box.ok());
    EXPECT_EQ((*box)->Call(&Crash).code(), absl::StatusCode::kAborted);
  }
  auto box = pool->Acquire();
  ASSERT_TRUE(box.ok());
  EXPECT_EQ(Bump(**box), 42);
}

// A lease whose Reset fails (the testing switch makes the next one fail):
// that compartment is destroyed, never handed out again, and a fresh one
// made with setup takes its place. The lease's end cannot return the error;
// last_error() has it.
TEST(CompartmentPoolTest, ACompartmentWhoseResetFailsIsReplaced) {
  auto pool = MakePool(2);
  ASSERT_NE(pool, nullptr);
  std::string failed;
  {
    auto box = pool->Acquire();
    ASSERT_TRUE(box.ok()) << box.status();
    failed = (*box)->name();
    EXPECT_EQ(Bump(**box), 42);
    internal::FailNextResetForTesting();
  }  // the lease ends: Reset fails
  EXPECT_EQ(pool->size(), 2u);
  EXPECT_EQ(pool->available(), 2u);
  const absl::Status error = pool->last_error();
  EXPECT_EQ(error.code(), absl::StatusCode::kInternal) << error;
  EXPECT_THAT(std::string(error.message()), HasSubstr("'" + failed + "'"));
  EXPECT_THAT(std::string(error.message()), HasSubstr("Reset failed"));
  // Both compartments work, each from the loaded state; the failed one is
  // not among them.
  auto a = pool->TryAcquire();
  auto b = pool->TryAcquire();
  ASSERT_TRUE(a.ok() && b.ok());
  for (auto* lease : {&*a, &*b}) {
    EXPECT_NE((*lease)->name(), failed);
    EXPECT_EQ(Bump(**lease), 42);
    EXPECT_EQ(Bump(**lease), 43);
  }
  EXPECT_EQ(std::set<std::string>({(*a)->name(), (*b)->name()}).size(), 2u);
}

// The replacement's setup fails too: the pool shrinks, and both errors
// reach last_error() and the Acquire that finds the pool empty.
TEST(CompartmentPoolTest, AFailedReplacementKeepsBothErrors) {
  int setups = 0;
  absl::StatusOr<std::unique_ptr<CompartmentPool>> pool =
      CompartmentPool::Create(
          {.compartment = {.name = "once"},
           .size = 1,
           .setup = [&setups](Compartment&) {
             return ++setups == 1 ? absl::OkStatus()
                                  : absl::UnavailableError("no more setups");
           }});
  ASSERT_TRUE(pool.ok()) << pool.status();
  {
    auto box = (*pool)->Acquire();
    ASSERT_TRUE(box.ok());
    internal::FailNextResetForTesting();
  }
  EXPECT_EQ((*pool)->size(), 0u);
  const std::string error((*pool)->last_error().message());
  EXPECT_THAT(error, HasSubstr("no more setups"));
  EXPECT_THAT(error, HasSubstr("'once-0': Reset failed"));
  absl::StatusOr<CompartmentPool::Lease> none = (*pool)->TryAcquire();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr("'once-0': Reset failed"));
}

TEST(CompartmentPoolTest, CreateReportsSetupErrorsAndBadSizes) {
  EXPECT_EQ(CompartmentPool::Create({.size = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<CompartmentPool>> pool =
      CompartmentPool::Create(
          {.compartment = {.name = "missing"},
           .size = 2,
           .setup = [](Compartment& c) {
             return c.Load("/nonexistent/libnothing.so");
           }});
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(pool.status().message()), HasSubstr("missing-0"));
}

TEST(CompartmentPoolTest, LeasesMoveAndReturnOnce) {
  auto pool = MakePool(1);
  ASSERT_NE(pool, nullptr);
  auto a = pool->Acquire();
  ASSERT_TRUE(a.ok());
  CompartmentPool::Lease moved = *std::move(a);
  CompartmentPool::Lease again = std::move(moved);
  EXPECT_EQ(Bump(*again), 42);
  EXPECT_EQ(pool->available(), 0u);
}

}  // namespace
}  // namespace mpkbox::testing
