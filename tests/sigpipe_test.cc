// SIGPIPE (THREAT_MODEL.md): a compartment allowed to write to a pipe whose
// reader is gone. The write runs with host rights in the SIGSYS handler, so
// the kernel's SIGPIPE goes to the host's thread: with the default action
// it kills the process. The compartment must get EPIPE instead.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

// Compartment code: a raw write(2) of five bytes from its own stack.
long WriteHello(long fd) {
  char buf[] = {'h', 'e', 'l', 'l', 'o'};
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(SYS_write), "D"(fd), "S"(buf), "d"(sizeof(buf))
               : "rcx", "r11", "memory");
  return ret;
}

// The host keeps a word the attack must not change.
volatile long host_word = 42;

// A pipe with its reader closed: writing to fds[1] raises SIGPIPE.
int BrokenPipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  close(fds[0]);
  return fds[1];
}

bool SigpipePending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE);
}

TEST(SigpipeDeathTest, ClosedPipeKillsTheHostWithoutContainment) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSigpipeContainmentForTesting();
        signal(SIGPIPE, SIG_DFL);
        const int fd = BrokenPipe();
        auto box = MakeBox({.name = "piper",
                            .syscalls = SyscallPolicy().AllowWrite({fd})});
        box->Call(&WriteHello, fd).IgnoreError();
        _exit(0);
      },
      ::testing::KilledBySignal(SIGPIPE), "");
}

TEST(SigpipeTest, ClosedPipeIsEpipeForTheCompartment) {
  signal(SIGPIPE, SIG_DFL);  // what kills a host that keeps it
  const int fd = BrokenPipe();
  ASSERT_GE(fd, 0);
  auto box = MakeBox(
      {.name = "piper", .syscalls = SyscallPolicy().AllowWrite({fd})});
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);  // and again
  EXPECT_FALSE(SigpipePending());
  EXPECT_EQ(host_word, 42);
  // The process and the compartment still work.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto writer = MakeBox(
      {.name = "writer", .syscalls = SyscallPolicy().AllowWrite({fds[1]})});
  EXPECT_EQ(Value(writer->Call(&WriteHello, fds[1])), 5);
  close(fds[0]);
  close(fds[1]);
  close(fd);
}

// The host's own SIGPIPE, pending while the compartment writes, survives.
TEST(SigpipeTest, HostsPendingSigpipeIsNotConsumed) {
  signal(SIGPIPE, SIG_DFL);
  const int fd = BrokenPipe();
  ASSERT_GE(fd, 0);
  auto box = MakeBox(
      {.name = "piper", .syscalls = SyscallPolicy().AllowWrite({fd})});
  sigset_t pipe_only, saved;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  ASSERT_EQ(write(fd, "x", 1), -1);  // the host's own write: its SIGPIPE
  ASSERT_TRUE(SigpipePending());
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_TRUE(SigpipePending());
  const timespec now{};
  EXPECT_EQ(sigtimedwait(&pipe_only, nullptr, &now), SIGPIPE);
  EXPECT_FALSE(SigpipePending());
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  close(fd);
}

}  // namespace
}  // namespace mpkbox
