/* loader_attack_privileged_code_test.cc: clean code with an 8-byte placeholder
   that the test turns into WRPKRU after the scan, either through a relocation
   it points at the placeholder (GLOB_DAT of the absolute symbol la_abs_code,
   whose value is the bytes 0f 01 ef 90 90 90 90 90) or by rewriting the file
   after Load. la_patch_attack opens every key if the placeholder holds WRPKRU,
   then writes the host address it is given. */
#include <stdint.h>

__asm__(
    ".globl la_abs_code\n"
    ".set la_abs_code, 0x9090909090ef010f\n");

int la_ok(int x) { return 2 * x + 1; }

void la_patch_attack(uint64_t* target) {
  __asm__ volatile(
      "xorl %%eax, %%eax\n\t"
      "xorl %%ecx, %%ecx\n\t"
      "xorl %%edx, %%edx\n\t"
      ".byte 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90\n\t"
      "movq $0x41414141, (%0)\n\t"
      :
      : "r"(target)
      : "rax", "rcx", "rdx", "memory");
}
