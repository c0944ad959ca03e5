// Signals at the edges of the gate's windows, and several delivered at once
// (signal attacks: signal_attack_util.h): the selector reads BLOCK whenever
// compartment code runs, and signals pending together are all accepted.
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trampolines/gate_layout.h"
#include "mpkbox/mpkbox.h"
#include "tests/signal_attack_util.h"
#include "tests/test_util.h"
#include "trampolines/thread_block.h"

namespace mpkbox::signal_attack {
namespace {

using ::mpkbox::testing::MakeBox;

std::atomic<uint64_t> edge_deliveries{0};
void CountDelivery(int) { edge_deliveries.fetch_add(1); }
void Trivial() {}
// Calls back into the host over and over; after each return, the selector
// must read BLOCK (compartment code is running). Returns how often it did not.
uint64_t CountAllowWhileInside(void (*cb)(), uint64_t rounds) {
  const volatile uint8_t* selector = &mpkbox_tls_thread->selector;
  uint64_t allow = 0;
  for (uint64_t i = 0; i < rounds; ++i) {
    cb();
    allow += *selector == MPKBOX_SELECTOR_ALLOW;
  }
  return allow;
}

TEST(SignalEdgeTest, SelectorIsBlockWheneverCompartmentCodeRuns) {
  auto box = MakeBox({.name = "edges"});
  auto cb = box->RegisterCallback(&Trivial);
  ASSERT_TRUE(cb.ok());
  struct sigaction sa {}, old{};
  sa.sa_handler = CountDelivery;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  const pid_t pid = getpid();
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  std::atomic<bool> stop{false};
  edge_deliveries = 0;
  std::thread sender([&] {
    while (!stop.load()) {
      syscall(SYS_tgkill, pid, tid, SIGUSR1);
      for (int i = 0; i < 200; ++i) asm volatile("");
    }
  });
  uint64_t allow = 0;
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (edge_deliveries.load() < 5000 &&
         std::chrono::steady_clock::now() < give_up) {
    auto r = box->Call(&CountAllowWhileInside, cb->get(), uint64_t{20000});
    ASSERT_TRUE(r.ok()) << r.status();
    allow += r->UnverifiedValue("test");
  }
  stop = true;
  sender.join();
  ASSERT_EQ(sigaction(SIGUSR1, &old, nullptr), 0);
  EXPECT_EQ(allow, 0u) << "with " << edge_deliveries.load() << " signals";
  EXPECT_GT(edge_deliveries.load(), 200u);  // the attack surface was hit
}

std::atomic<int> usr1_seen{0}, usr2_seen{0};

TEST(SignalEdgeTest, SignalsDeliveredTogetherAreAllAccepted) {
  auto box = MakeBox({.name = "together"});
  ASSERT_TRUE(box->Call(&Trivial).ok());  // this thread runs compartments
  struct sigaction a1 {}, a2{}, o1{}, o2{};
  a1.sa_handler = +[](int) { usr1_seen++; };
  a2.sa_handler = +[](int) { usr2_seen++; };
  ASSERT_EQ(sigaction(SIGUSR1, &a1, &o1), 0);
  ASSERT_EQ(sigaction(SIGUSR2, &a2, &o2), 0);
  sigset_t both, saved;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGUSR2);
  for (int i = 0; i < 100; ++i) {
    pthread_sigmask(SIG_BLOCK, &both, &saved);
    raise(SIGUSR1);
    raise(SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);  // both frames at once
  }
  EXPECT_EQ(usr1_seen.load(), 100);
  EXPECT_EQ(usr2_seen.load(), 100);
  ASSERT_EQ(sigaction(SIGUSR1, &o1, nullptr), 0);
  ASSERT_EQ(sigaction(SIGUSR2, &o2, nullptr), 0);
  EXPECT_TRUE(box->Call(&Trivial).ok());
}

}  // namespace
}  // namespace mpkbox::signal_attack
