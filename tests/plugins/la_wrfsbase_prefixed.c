/* loader_attack_privileged_code_test.cc: WRFSBASE with a segment-override
   prefix between the mandatory F3 and REX.W: f3 2e 48 0f ae d0 ("cs wrfsbase
   %rax"). The CPU runs it as WRFSBASE. la_fs_probe sets FS to `value`, reads it
   back, and puts the old FS base back with the same encoding. */
#include <stdint.h>

uint64_t la_fs_probe(uint64_t value) {
  uint64_t seen;
  __asm__ volatile(
      "rdfsbase %%rbx\n\t"
      "movq %1, %%rax\n\t"
      ".byte 0xf3, 0x2e, 0x48, 0x0f, 0xae, 0xd0\n\t" /* cs wrfsbase %rax */
      "rdfsbase %0\n\t"
      ".byte 0xf3, 0x2e, 0x48, 0x0f, 0xae, 0xd3\n\t" /* cs wrfsbase %rbx */
      : "=&c"(seen)
      : "r"(value)
      : "rax", "rbx", "memory");
  return seen;
}
