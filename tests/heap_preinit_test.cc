// A thread that exists before Runtime::Init keeps working with the host heap
// on the trusted key, and may enter compartments. Its own binary: Init must
// not have run when the thread starts.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

int Twice(int x) { return 2 * x; }

std::atomic<bool> init_done{false};
std::atomic<bool> quit{false};  // the binary only lists its tests
std::atomic<int> result{-1};

// Started by a static constructor, before main and so before Init.
struct EarlyThread {
  std::thread thread;
  EarlyThread() {
    thread = std::thread([] {
      std::vector<std::string> before(100, std::string(100, 'a'));
      while (!init_done.load()) {
        if (quit.load()) return;
        std::this_thread::yield();
      }
      std::vector<std::string> after(1000, std::string(200, 'b'));
      size_t total = 0;
      for (const std::string& s : after) total += s.size();
      auto box = Compartment::Create({.name = "late"});
      if (!box.ok()) return;
      auto r = (*box)->Call(&Twice, 21);
      result.store(r.ok() && total == 200000 && before.size() == 100
                       ? r->UnverifiedValue("test")
                       : 0);
    });
  }
  ~EarlyThread() {
    quit.store(true);
    if (thread.joinable()) thread.join();
  }
} early_thread;

TEST(HeapPreInitTest, ThreadStartedBeforeInitWorks) {
  ASSERT_TRUE(Runtime::Init().ok());
  auto box = testing::MakeBox({.name = "main"});
  init_done.store(true);
  early_thread.thread.join();
  EXPECT_EQ(result.load(), 42);
}

}  // namespace
}  // namespace mpkbox
