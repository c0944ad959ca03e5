// What the allocator entry and the gate leave in registers (heap attacks:
// heap_attack_util.h): after malloc inside, no register points into trusted
// memory or the host's stack; after a Call, no vector register holds what
// the host copied last.
#include <string.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "allocator/compartment_heap.h"
#include "gtest/gtest.h"
#include "allocator/heap_cache.h"
#include "mpkbox/mpkbox.h"
#include "runtime/runtime_state.h"
#include "tests/heap_attack_util.h"
#include "tests/test_util.h"

// Reads every register compartment code can read (AVX-512 machines).
// - dump(out) stores zmm0-31 (2048 bytes) and k0-7 (64 bytes) at out;
// - entry(op, a, b, out) calls callback stub 0, the allocator entry, as
//   malloc does, then stores rax, rdx, rcx, rsi, rdi, r8-r11 at out + 2112
//   and dumps the vector registers;
// - at_entry(out) stores what the Call gate left in the same registers.
asm(R"(
  .text
  .type mpkbox_test_dump_vectors, @function
mpkbox_test_dump_vectors:
  vmovdqu64 %zmm0, 0(%rdi)
  vmovdqu64 %zmm1, 64(%rdi)
  vmovdqu64 %zmm2, 128(%rdi)
  vmovdqu64 %zmm3, 192(%rdi)
  vmovdqu64 %zmm4, 256(%rdi)
  vmovdqu64 %zmm5, 320(%rdi)
  vmovdqu64 %zmm6, 384(%rdi)
  vmovdqu64 %zmm7, 448(%rdi)
  vmovdqu64 %zmm8, 512(%rdi)
  vmovdqu64 %zmm9, 576(%rdi)
  vmovdqu64 %zmm10, 640(%rdi)
  vmovdqu64 %zmm11, 704(%rdi)
  vmovdqu64 %zmm12, 768(%rdi)
  vmovdqu64 %zmm13, 832(%rdi)
  vmovdqu64 %zmm14, 896(%rdi)
  vmovdqu64 %zmm15, 960(%rdi)
  vmovdqu64 %zmm16, 1024(%rdi)
  vmovdqu64 %zmm17, 1088(%rdi)
  vmovdqu64 %zmm18, 1152(%rdi)
  vmovdqu64 %zmm19, 1216(%rdi)
  vmovdqu64 %zmm20, 1280(%rdi)
  vmovdqu64 %zmm21, 1344(%rdi)
  vmovdqu64 %zmm22, 1408(%rdi)
  vmovdqu64 %zmm23, 1472(%rdi)
  vmovdqu64 %zmm24, 1536(%rdi)
  vmovdqu64 %zmm25, 1600(%rdi)
  vmovdqu64 %zmm26, 1664(%rdi)
  vmovdqu64 %zmm27, 1728(%rdi)
  vmovdqu64 %zmm28, 1792(%rdi)
  vmovdqu64 %zmm29, 1856(%rdi)
  vmovdqu64 %zmm30, 1920(%rdi)
  vmovdqu64 %zmm31, 1984(%rdi)
  kmovq %k0, 2048(%rdi)
  kmovq %k1, 2056(%rdi)
  kmovq %k2, 2064(%rdi)
  kmovq %k3, 2072(%rdi)
  kmovq %k4, 2080(%rdi)
  kmovq %k5, 2088(%rdi)
  kmovq %k6, 2096(%rdi)
  kmovq %k7, 2104(%rdi)
  ret
  .size mpkbox_test_dump_vectors, . - mpkbox_test_dump_vectors

  .globl mpkbox_test_entry_regs
  .type mpkbox_test_entry_regs, @function
mpkbox_test_entry_regs:
  push %rbx
  mov %rcx, %rbx
  call mpkbox_callback_stubs
  mov %rax, 2112(%rbx)
  mov %rdx, 2120(%rbx)
  mov %rcx, 2128(%rbx)
  mov %rsi, 2136(%rbx)
  mov %rdi, 2144(%rbx)
  mov %r8, 2152(%rbx)
  mov %r9, 2160(%rbx)
  mov %r10, 2168(%rbx)
  mov %r11, 2176(%rbx)
  mov %rbx, %rdi
  call mpkbox_test_dump_vectors
  pop %rbx
  ret
  .size mpkbox_test_entry_regs, . - mpkbox_test_entry_regs

  .globl mpkbox_test_call_regs
  .type mpkbox_test_call_regs, @function
mpkbox_test_call_regs:
  mov %rax, 2112(%rdi)
  mov %rdx, 2120(%rdi)
  mov %rcx, 2128(%rdi)
  mov %rsi, 2136(%rdi)
  movq $0, 2144(%rdi)
  mov %r8, 2152(%rdi)
  mov %r9, 2160(%rdi)
  mov %r10, 2168(%rdi)
  mov %r11, 2176(%rdi)
  jmp mpkbox_test_dump_vectors
  .size mpkbox_test_call_regs, . - mpkbox_test_call_regs
)");

extern "C" void mpkbox_test_entry_regs(uint64_t op, uint64_t a, uint64_t b,
                                       void* out);
extern "C" void mpkbox_test_call_regs(void* out);

namespace mpkbox::heap_attack {
namespace {

using internal::kOpAlignedAlloc;
using internal::kOpCalloc;
using internal::kOpMalloc;
using internal::kOpRealloc;
using internal::kOpUsableSize;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

constexpr size_t kRegBytes = 2184;
constexpr size_t kRaxWord = 2112 / 8;  // the entry's result: not a leak

std::string RegisterName(size_t word) {
  if (word < 256) return absl::StrFormat("zmm%d[%d]", word / 8, word % 8);
  if (word < 264) return absl::StrFormat("k%d", word - 256);
  static const char* gpr[] = {"rax", "rdx", "rcx", "rsi", "rdi",
                              "r8",  "r9",  "r10", "r11"};
  return gpr[word - 264];
}

// After callback 0 returns into the compartment, no register holds an
// address of trusted memory or of the host's stack (rax is the result).
// Host code behind the entry leaves trusted pointers in xmm/zmm registers.
TEST(RegisterLeakTest, AllocatorEntryLeaksNoTrustedAddress) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "no AVX-512";
  auto box = MakeBox({.name = "prober"});
  auto* out = static_cast<uint64_t*>(*box->Allocate(4096, 64));
  const uintptr_t own =
      Value(box->Call(&MallocFilled, size_t{5000}, uint64_t{1}));
  const int trusted = internal::Keys().trusted;
  struct {
    uint64_t op, a, b;
  } const calls[] = {{kOpMalloc, 100, 0},       {kOpMalloc, 100000, 0},
                     {kOpUsableSize, own, 0},   {kOpCalloc, 10, 10},
                     {kOpAlignedAlloc, 64, 64}, {kOpRealloc, 0, 70}};
  for (const auto& c : calls) {
    memset(out, 0, kRegBytes);
    ASSERT_TRUE(box->Call(&mpkbox_test_entry_regs, c.op, c.a, c.b,
                          static_cast<void*>(out))
                    .ok());
    KeySnapshot keys;
    for (size_t w = 0; w < kRegBytes / 8; ++w) {
      if (w == kRaxWord || out[w] == 0) continue;
      EXPECT_NE(keys.KeyOf(out[w]), trusted)
          << "op " << c.op << ": " << RegisterName(w) << " = 0x" << std::hex
          << out[w] << " points into trusted memory";
      EXPECT_FALSE(keys.OnMainStack(out[w]))
          << "op " << c.op << ": " << RegisterName(w) << " = 0x" << std::hex
          << out[w] << " points into the host's stack";
    }
  }
}

// The bytes the host copied last before a Call are not in any register
// compartment code can read.
// glibc's memcpy moves data through zmm16-31, which the gate must clear.
TEST(RegisterLeakTest, CallGateLeavesNoHostDataInVectorRegisters) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "no AVX-512";
  auto box = MakeBox({.name = "prober"});
  auto* out = static_cast<uint64_t*>(*box->Allocate(4096, 64));
  constexpr uint64_t kSecret = 0x5ec2e75ec2e75ec2ull;
  std::unique_ptr<uint64_t[]> secret(new uint64_t[32]);
  std::unique_ptr<uint64_t[]> copy(new uint64_t[32]);
  for (int i = 0; i < 32; ++i) secret[i] = kSecret;
  void* (*volatile copy_fn)(void*, const void*, size_t) = memcpy;
  ASSERT_TRUE(box->Call(&mpkbox_test_call_regs, static_cast<void*>(out)).ok());
  int leaked = 0;
  for (size_t bytes : {size_t{64}, size_t{200}, size_t{256}}) {
    memset(out, 0, kRegBytes);
    copy_fn(copy.get(), secret.get(), bytes);  // the host's last copy
    ASSERT_TRUE(
        box->Call(&mpkbox_test_call_regs, static_cast<void*>(out)).ok());
    for (size_t w = 0; w < kRegBytes / 8; ++w) {
      if (out[w] == kSecret) {
        ++leaked;
        ADD_FAILURE() << "after a host memcpy of " << bytes
                      << " secret bytes, the compartment reads them in "
                      << RegisterName(w);
        break;
      }
    }
  }
  EXPECT_EQ(leaked, 0);
}

}  // namespace
}  // namespace mpkbox::heap_attack
