/* loader_attack_privileged_code_test.cc: a WRPKRU that the test hides by
   shrinking the executable segment's p_filesz so that it ends just before
   it: the bytes are still on a page the loader maps executable.
   la_tail_attack opens every key (PKRU 0) and writes the host address it is
   given. */
#include <stdint.h>

int la_ok(int x) { return 2 * x + 1; }

void la_tail_attack(uint64_t* target) {
  __asm__ volatile(
      "xorl %%eax, %%eax\n\t"
      "xorl %%ecx, %%ecx\n\t"
      "xorl %%edx, %%edx\n\t"
      ".byte 0x0f, 0x01, 0xef\n\t" /* wrpkru */
      "movq $0x41414141, (%0)\n\t"
      :
      : "r"(target)
      : "rax", "rcx", "rdx", "memory");
}
