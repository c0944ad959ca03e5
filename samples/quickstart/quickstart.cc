// quickstart: the first mpkbox program to run (`./build.sh demo`).
//
// It checks that this machine has memory protection keys, creates a
// compartment, calls a function inside it (printing the PKRU register inside
// and outside), lets the compartment call back into the host, and finally
// shows, in a child process, that compartment code cannot write host memory.
//
// Exit code: 0 when every expectation held, 1 when one failed, 2 when this
// machine has no usable PKU.
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "mpkbox/mpkbox.h"

namespace {

int failures = 0;

void Expect(bool ok, const char* what) {
  if (!ok) {
    ++failures;
    std::printf("    FAILED: %s\n", what);
  }
}

uint32_t ReadPkru() {
  uint32_t eax, edx;
  asm volatile("rdpkru" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

// ---- Code that runs inside the compartment --------------------------------
// It may read ambient (key 0) memory, use its own stack, and call the
// callbacks the host registered; it may not read or write the host's
// stacks, globals or heap.

int Add(int a, int b) { return a + b; }

uint32_t PkruInside() { return ReadPkru(); }

// Calls back into the host n times.
int SumOfSquares(int (*square)(int), int n) {
  int sum = 0;
  for (int i = 1; i <= n; ++i) sum += square(i);
  return sum;
}

// A host global: the host's data carries the trusted key from Runtime::Init
// on, so compartments can neither read nor write it.
volatile int host_value = 1234;

void WriteHostGlobal(int v) { host_value = v; }

// ---- Host code -------------------------------------------------------------

int callback_calls = 0;
uint32_t callback_pkru = 0xffffffff;

// A host callback. Its argument comes from the compartment, hence Tainted.
int HostSquare(mpkbox::Tainted<int> x) {
  ++callback_calls;  // host rights: host memory is writable here
  callback_pkru = ReadPkru();
  return x.Verify([](int v) { return v >= 0 && v <= 1000 ? v * v : -1; });
}

// "RW 3, read-only 0 2, no access 1 4-15": what a PKRU value allows.
std::string DescribePkru(uint32_t pkru) {
  // Per key k, bit 2k disables access and bit 2k+1 disables writes.
  auto rights = [pkru](int key) {
    uint32_t bits = (pkru >> (2 * key)) & 3;
    return bits == 0 ? 0 : bits == 2 ? 1 : 2;  // RW, read-only, no access
  };
  const char* names[] = {"RW", "read-only", "no access"};
  std::string out;
  for (int r = 0; r < 3; ++r) {
    std::string keys;
    for (int k = 0; k < 16; ++k) {
      if (rights(k) != r) continue;
      int last = k;
      while (last + 1 < 16 && rights(last + 1) == r) ++last;
      // append, not operator+: GCC 12 at -O3 warns (-Wrestrict) on the
      // temporary strings of `" " + std::to_string(k)`.
      keys += ' ';
      keys += std::to_string(k);
      if (last > k) {
        keys += last == k + 1 ? ' ' : '-';
        keys += std::to_string(last);
      }
      k = last;
    }
    if (keys.empty()) continue;
    if (!out.empty()) out += ", ";
    out += names[r];
    out += keys;
  }
  return out;
}

bool CpuinfoHas(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      if (w == flag) return true;
    }
    return false;
  }
  return false;
}

// What the child's SIGSEGV handler tells the parent through a pipe.
struct FaultNote {
  int signo;
  int code;
  int pkey;
  uintptr_t addr;
};

int note_fd = -1;

// Runs on a key-0 alternate stack with the kernel's default PKRU. Reports the
// fault, then returns; SA_RESETHAND restored the default action, so the
// faulting write runs again and the kernel kills the child with SIGSEGV.
void OnSegv(int signo, siginfo_t* info, void* /*ucontext*/) {
  FaultNote note{signo, info->si_code, static_cast<int>(info->si_pkey),
                 reinterpret_cast<uintptr_t>(info->si_addr)};
  ssize_t n = write(note_fd, &note, sizeof(note));
  static_cast<void>(n);
}

constexpr int kChildContained = 10;  // the runtime turned the fault into a status
constexpr int kChildWriteWorked = 11;
constexpr int kChildSetupFailed = 12;

[[noreturn]] void Child(mpkbox::Compartment& box, int fd) {
  rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);  // the crash is expected: no core file
  note_fd = fd;
  // Mapped, not a global: key 0, usable under the default PKRU (the host's
  // globals carry the trusted key).
  constexpr size_t kAltStackBytes = 64 << 10;
  void* alt_stack = mmap(nullptr, kAltStackBytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (alt_stack == MAP_FAILED) _exit(kChildSetupFailed);
  stack_t ss = {};
  ss.ss_sp = alt_stack;
  ss.ss_size = kAltStackBytes;
  struct sigaction sa = {};
  sa.sa_sigaction = OnSegv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  if (sigaltstack(&ss, nullptr) != 0 || sigaction(SIGSEGV, &sa, nullptr) != 0) {
    _exit(kChildSetupFailed);
  }
  absl::Status s = box.Call(&WriteHostGlobal, 7);
  if (!s.ok()) {
    std::printf("    (child) the call returned: %s\n", s.ToString().c_str());
    std::fflush(stdout);
    _exit(kChildContained);
  }
  std::printf("    (child) the write went through: host_value = %d\n",
              host_value);
  std::fflush(stdout);
  _exit(kChildWriteWorked);
}

void ForkAndWriteHostMemory(mpkbox::Compartment& box) {
  std::printf("[5] child process: compartment code writes the host global "
              "host_value at %p\n",
              static_cast<const void*>(const_cast<const int*>(&host_value)));
  int fds[2];
  if (pipe(fds) != 0) {
    Expect(false, "pipe() failed");
    return;
  }
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    Expect(false, "fork() failed");
    return;
  }
  if (pid == 0) {
    close(fds[0]);
    Child(box, fds[1]);
  }
  close(fds[1]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    Expect(false, "waitpid() failed");
    close(fds[0]);
    return;
  }
  FaultNote note = {};
  bool have_note = read(fds[0], &note, sizeof(note)) ==
                   static_cast<ssize_t>(sizeof(note));
  close(fds[0]);

  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) {
    bool pku = have_note && note.code == SEGV_PKUERR;
    if (pku) {
      std::printf("    write to host memory blocked: child killed by SIGSEGV "
                  "(PKU)\n");
      std::printf("    fault: SEGV_PKUERR at 0x%jx, protection key %d\n",
                  static_cast<uintmax_t>(note.addr), note.pkey);
    } else {
      std::printf("    child killed by SIGSEGV, si_code %d (not SEGV_PKUERR)\n",
                  have_note ? note.code : -1);
    }
    Expect(pku, "the fault should be a protection-key fault (SEGV_PKUERR)");
    Expect(!pku || note.pkey != 0,
           "the faulting page should carry the trusted key");
    Expect(!pku || note.addr == reinterpret_cast<uintptr_t>(&host_value),
           "the fault address should be &host_value");
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == kChildContained) {
    // Once the runtime contains faults, the call returns an error instead.
    std::printf("    write to host memory blocked: the call failed in the "
                "child, which lives on\n");
  } else if (WIFEXITED(status)) {
    std::printf("    child exited with code %d\n", WEXITSTATUS(status));
    Expect(false, "the compartment's write to host memory was not blocked");
  } else {
    std::printf("    child ended by signal %d\n",
                WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    Expect(false, "the child should die of SIGSEGV");
  }
}

}  // namespace

int main() {
  std::printf("mpkbox quickstart\n");
  utsname u = {};
  if (uname(&u) == 0) {
    std::printf("    kernel %s %s (mpkbox needs >= 6.12.5 on AMD)\n", u.release,
                u.machine);
  }

  // 1. Does this machine have memory protection keys?
  if (!mpkbox::Runtime::IsSupported()) {
    absl::Status s = mpkbox::Runtime::Init();
    std::printf("[1] runtime support: NO\n    %s\n", s.ToString().c_str());
    std::printf("    /proc/cpuinfo: pku %s, ospke %s\n",
                CpuinfoHas("pku") ? "yes" : "no",
                CpuinfoHas("ospke") ? "yes" : "no");
    std::printf("    mpkbox needs an x86-64 CPU with PKU, enabled by the "
                "kernel.\n");
    return 2;
  }
  absl::Status init = mpkbox::Runtime::Init();
  std::printf("[1] runtime support: PKU available; Runtime::Init: %s\n",
              init.ToString().c_str());
  Expect(init.ok(), "Runtime::Init should succeed");
  if (!init.ok()) return 1;

  // 2. A compartment: its own protection key, stack and PKRU value.
  absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> created =
      mpkbox::Compartment::Create({.name = "quickstart"});
  if (!created.ok()) {
    std::printf("[2] creating compartment \"quickstart\": %s\n",
                created.status().ToString().c_str());
    return 1;
  }
  mpkbox::Compartment& box = **created;
  std::printf("[2] created compartment \"%s\": protection key %d, PKRU "
              "0x%08x\n",
              box.name().c_str(), box.pkey(), box.pkru());

  // 3. Calls: results come back Tainted; the host decides how to trust them.
  absl::StatusOr<mpkbox::Tainted<int>> sum = box.Call(&Add, 20, 22);
  Expect(sum.ok(), "Call(Add) should succeed");
  if (!sum.ok()) return 1;
  bool sum_ok = sum->Verify([](int v) { return v == 42; });
  std::printf("[3] Call(Add, 20, 22) inside the compartment returned %d "
              "(verified: %s)\n",
              sum->UnverifiedValue("printed for the demo"),
              sum_ok ? "yes" : "no");
  Expect(sum_ok, "Add(20, 22) should be 42");

  uint32_t host_before = ReadPkru();
  absl::StatusOr<mpkbox::Tainted<uint32_t>> inside = box.Call(&PkruInside);
  uint32_t host_after = ReadPkru();
  Expect(inside.ok(), "Call(PkruInside) should succeed");
  if (!inside.ok()) return 1;
  uint32_t pkru_inside = inside->UnverifiedValue("printed for the demo");
  std::printf("    PKRU inside the compartment: 0x%08x (keys %s)\n",
              pkru_inside, DescribePkru(pkru_inside).c_str());
  std::printf("    PKRU on the host:            0x%08x (keys %s), the same "
              "after the call: %s\n",
              host_before, DescribePkru(host_before).c_str(),
              host_after == host_before ? "yes" : "no");
  Expect(pkru_inside == box.pkru(),
         "the PKRU inside should be Compartment::pkru()");
  Expect(pkru_inside != host_before, "inside and host PKRU should differ");
  Expect(host_after == host_before, "the gate should restore the host PKRU");

  // 4. Callbacks: the compartment calls a host function through a stub.
  absl::StatusOr<mpkbox::Callback<int(mpkbox::Tainted<int>)>> cb =
      box.RegisterCallback(&HostSquare);
  Expect(cb.ok(), "RegisterCallback should succeed");
  if (!cb.ok()) {
    std::printf("    %s\n", cb.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<mpkbox::Tainted<int>> squares =
      box.Call(&SumOfSquares, cb->get(), 3);
  Expect(squares.ok(), "Call(SumOfSquares) should succeed");
  if (!squares.ok()) return 1;
  int squares_value = squares->UnverifiedValue("printed for the demo");
  std::printf("[4] host callback: the compartment called HostSquare %d times; "
              "1 + 4 + 9 = %d\n",
              callback_calls, squares_value);
  std::printf("    PKRU while the host callback ran: 0x%08x (host rights)\n",
              callback_pkru);
  Expect(callback_calls == 3, "HostSquare should run 3 times");
  Expect(squares_value == 14, "the sum of squares should be 14");
  Expect(callback_pkru == host_before,
         "the callback should run with the host's PKRU");

  // 5. Isolation: compartment code writing host memory dies (for now the
  // whole process, hence the child).
  ForkAndWriteHostMemory(box);
  Expect(host_value == 1234, "the parent's host_value should be unchanged");

  if (failures != 0) {
    std::printf("quickstart: %d expectation(s) FAILED\n", failures);
    return 1;
  }
  std::printf("quickstart: all checks passed\n");
  return 0;
}
