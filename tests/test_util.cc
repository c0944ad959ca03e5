#include "tests/test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "runtime/keys/pku.h"
#include "trampolines/gate_layout.h"

namespace mpkbox::testing {

long RssPages() {
  long size = 0, rss = 0;
  std::ifstream("/proc/self/statm") >> size >> rss;
  return rss;
}

int CountMappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) ++n;
  return n;
}

MappingsSnapshot::MappingsSnapshot() {
  const int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n;
  while (size_ < sizeof(text_) &&
         (n = read(fd, text_ + size_, sizeof(text_) - size_)) > 0) {
    size_ += static_cast<size_t>(n);
  }
  close(fd);
}

int MappingsSnapshot::count() const {
  return static_cast<int>(std::count(text_, text_ + size_, '\n'));
}

std::string MappingsSnapshot::DiffFrom(const MappingsSnapshot& before) const {
  auto lines = [](const MappingsSnapshot& s) {
    std::set<std::string> out;
    std::istringstream in(std::string(s.text_, s.size_));
    for (std::string line; std::getline(in, line);) out.insert(line);
    return out;
  };
  const std::set<std::string> old_lines = lines(before);
  const std::set<std::string> new_lines = lines(*this);
  std::string out = "mappings added:\n";
  for (const std::string& line : new_lines) {
    if (old_lines.count(line) == 0) out += "  + " + line + "\n";
  }
  out += "mappings gone:\n";
  for (const std::string& line : old_lines) {
    if (new_lines.count(line) == 0) out += "  - " + line + "\n";
  }
  return out;
}

std::vector<uintptr_t> FindBytes(const char* begin, const char* end,
                                 const std::vector<uint8_t>& pattern) {
  std::vector<uintptr_t> hits;
  for (const char* p = begin; p + pattern.size() <= end; ++p) {
    if (memcmp(p, pattern.data(), pattern.size()) == 0) {
      hits.push_back(reinterpret_cast<uintptr_t>(p));
    }
  }
  return hits;
}

std::vector<size_t> FindBytes(const std::vector<uint8_t>& bytes,
                              const std::vector<uint8_t>& pattern) {
  const char* begin = reinterpret_cast<const char*>(bytes.data());
  std::vector<size_t> offsets;
  for (uintptr_t hit : FindBytes(begin, begin + bytes.size(), pattern)) {
    offsets.push_back(hit - reinterpret_cast<uintptr_t>(begin));
  }
  return offsets;
}

std::vector<uintptr_t> FindWrpkru(const char* begin, const char* end) {
  std::vector<uintptr_t> sites;
  if (end - begin < 3) return sites;
  for (uintptr_t p : FindBytes(begin + 1, end, {0x01, 0xef})) {
    const uint8_t escape = reinterpret_cast<const uint8_t*>(p)[-1];
    if (escape == 0x0f || escape == 0xcc) sites.push_back(p - 1);
  }
  return sites;
}

void JumpAndWrite(uintptr_t target) {
  asm volatile(
      "xorl %%eax, %%eax\n"
      "xorl %%ecx, %%ecx\n"
      "xorl %%edx, %%edx\n"
      "call *%0\n"
      :
      : "r"(target)
      : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
        "memory");
  mpkbox_test_guard_target = 666;
}

void ExpectJumpStopped(Compartment* box, uintptr_t site,
                       const std::string& what) {
  absl::Status s = box->Call(&JumpAndWrite, site);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_NE(s.message().find("jumped to " + what), absl::string_view::npos)
      << s;
  EXPECT_NE(s.message().find("'" + box->name() + "'"),
            absl::string_view::npos)
      << s;
  EXPECT_EQ(mpkbox_test_guard_target, 1234u);
  EXPECT_EQ(internal::ReadPkru(), 0u);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

void GuardedJumpTest::SetUp() {
  ASSERT_TRUE(Runtime::Init().ok());
  mpkbox_test_guard_target = 1234;
}

uintptr_t StackAddress(int spin) {
  volatile int local = spin;
  for (int i = 0; i < spin; ++i) asm volatile("");
  return reinterpret_cast<uintptr_t>(&local);
}

uint64_t Spin(uint64_t iterations) {
  volatile uint64_t x = 0;
  for (uint64_t i = 0; i < iterations; ++i) x = x + i;
  return x;
}

uint64_t Churn(int rounds) {
  void* live[64] = {};
  uint64_t sum = 0;
  for (int i = 0; i < rounds; ++i) {
    const int slot = (i * 7) % 64;
    free(live[slot]);
    const size_t size = 1 + static_cast<size_t>((i * 131) % 5000);
    auto* p = static_cast<unsigned char*>(malloc(size));
    if (p == nullptr) return 0;
    p[0] = static_cast<unsigned char>(i);
    p[size - 1] = static_cast<unsigned char>(i);
    live[slot] = p;
    sum += p[0];
  }
  for (void* p : live) free(p);
  return sum;
}

// ---- forged jumps -----------------------------------------------------------

MPKBOX_COMPARTMENT_READABLE AttackRegs attack_regs;
MPKBOX_COMPARTMENT_READABLE uint64_t attack_stack_top = 0;

uint64_t PayloadAddress() {
  return reinterpret_cast<uint64_t>(&mpkbox_test_payload);
}

AttackRegs PayloadRegs() {
  const uint64_t p = PayloadAddress();
  return AttackRegs{p, p, p, p, p, p, p, p, p, p, p, p, p, p, p, kOwnStack};
}

namespace {

static_assert(offsetof(AttackRegs, rsp) == 120);  // mpkbox_test_jump
constexpr uint32_t kFpXstateMagic1 = 0x46505853;

// A ucontext that would resume at the payload with PKRU 0, as the kernel
// would lay it out (FXSAVE magic, XSAVE header with the PKRU bit, PKRU at
// its CPUID offset), and a stack full of the payload's address.
struct FakeFrame {
  ucontext_t uc;
  siginfo_t info;
  alignas(64) unsigned char xsave[4096];
  alignas(16) uint64_t stack[32];
};

void BuildFakeFrame(FakeFrame* f) {
  memset(f, 0, sizeof(*f));
  for (uint64_t& slot : f->stack) slot = PayloadAddress();
  greg_t* g = f->uc.uc_mcontext.gregs;
  for (int i = 0; i < NGREG; ++i) g[i] = static_cast<greg_t>(PayloadAddress());
  g[REG_RSP] = reinterpret_cast<greg_t>(&f->stack[16]);
  g[REG_EFL] = 0x202;
  g[REG_CSGSFS] = 0x33;
  f->uc.uc_mcontext.fpregs = reinterpret_cast<fpregset_t>(f->xsave);
  uint32_t magic = kFpXstateMagic1;
  uint32_t size = sizeof(f->xsave);
  uint64_t features = ~uint64_t{0};
  memcpy(f->xsave + 464, &magic, 4);
  memcpy(f->xsave + 468, &size, 4);
  memcpy(f->xsave + 472, &features, 8);
  memcpy(f->xsave + 480, &size, 4);
  uint64_t xstate_bv = (1u << 9) | 3;
  memcpy(f->xsave + 512, &xstate_bv, 8);
  // PKRU (at its CPUID 0xD.9 offset) is 0: the memset left it so.
  f->info.si_signo = SIGSEGV;
  f->info.si_code = SEGV_PKUERR;
}

}  // namespace

void AttackFromInside() {
  FakeFrame frame;
  BuildFakeFrame(&frame);
  if (attack_stack_top != 0) frame.stack[8] = attack_stack_top;
  uint64_t regs[sizeof(AttackRegs) / 8];
  memcpy(regs, &attack_regs, sizeof(regs));
  for (uint64_t& reg : regs) {
    if (reg == kFakeFrame) reg = reinterpret_cast<uint64_t>(&frame.uc);
    if (reg == kFakeInfo) reg = reinterpret_cast<uint64_t>(&frame.info);
    if (reg == kOwnStack) reg = reinterpret_cast<uint64_t>(&frame.stack[8]);
  }
  mpkbox_test_jump(regs);
}

bool ContainedAsForgery(Compartment* box, const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted &&
         s.message().find("forged registers") != absl::string_view::npos &&
         box->last_fault() != nullptr && mpkbox_test_host_secret == kHostSecret;
}

}  // namespace mpkbox::testing

extern "C" {
MPKBOX_COMPARTMENT_READABLE uint64_t mpkbox_test_jump_target;
volatile uint64_t mpkbox_test_guard_target = 1234;
int mpkbox_test_host_secret = mpkbox::testing::kHostSecret;
}

// The payload stores 0 (ALLOW) in the selector page's selector byte (offset
// 1344), and exits with 77 (kEscaped) through exit_group (231).
static_assert(MPKBOX_SEL_SELECTOR == 1344 && MPKBOX_SELECTOR_ALLOW == 0);
static_assert(mpkbox::testing::kEscaped == 77);
asm(R"(
  .text
  .globl mpkbox_test_jump
  .type mpkbox_test_jump, @function
mpkbox_test_jump:
  movq 0(%rdi), %rax
  movq 8(%rdi), %rbx
  movq 16(%rdi), %rcx
  movq 24(%rdi), %rdx
  movq 32(%rdi), %rsi
  movq 48(%rdi), %rbp
  movq 56(%rdi), %r8
  movq 64(%rdi), %r9
  movq 72(%rdi), %r10
  movq 80(%rdi), %r11
  movq 88(%rdi), %r12
  movq 96(%rdi), %r13
  movq 104(%rdi), %r14
  movq 112(%rdi), %r15
  movq 120(%rdi), %rsp
  movq 40(%rdi), %rdi
  jmp *mpkbox_test_jump_target(%rip)
  .size mpkbox_test_jump, . - mpkbox_test_jump

  .globl mpkbox_test_payload
  .type mpkbox_test_payload, @function
mpkbox_test_payload:
  movl $666, mpkbox_test_host_secret(%rip)
  movq %fs:mpkbox_tls_thread@tpoff, %rax
  movb $0, 1344(%rax)
  movl $77, %edi
  movl $231, %eax
  syscall
  ud2
  .size mpkbox_test_payload, . - mpkbox_test_payload
)");
