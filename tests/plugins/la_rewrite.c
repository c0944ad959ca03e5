/* loader_attack_gadget_rewrite_test.cc: privileged byte sequences that span
   two compiler-style instructions, which Load rewrites
   (docs/INTERNALS.md, "Gadget bytes"). Each function is assembly with CFI,
   so the unwind table describes it, and computes something the test
   checks after the rewrite:
   - la_rw_wrpkru (la_rewrite_wrpkru.h): 0f 01 ef across rol $15,%eax and
     add %ebp,%edi, as in Debian's libnettle; the add becomes 03 fd;
   - la_rw_xrstor / la_rw_xrstors: mov disp8(%rdi,%rcx,1),%eax with SIB 0f
     and disp8 ae / c7, then test $1,%al (a8) / cltd (99): 0f ae a8 and
     0f c7 99; the SIB becomes 39 (base and index swapped).
   WRFSBASE and WRGSBASE: la_rewrite_fsbase.c says why none is rewritable.
   la_rw_jump jumps into the middle of la_rw_wrpkru, at its 0f, as an
   attacker inside the compartment would. */
#include <stdint.h>

#include "la_rewrite_wrpkru.h"

#define LA_RW_WITH_CFI(x) x
__asm__(
    LA_RW_WRPKRU("la_rw_wrpkru", LA_RW_WITH_CFI)
    ".text\n"
    ".globl la_rw_jump\n"
    ".type la_rw_jump, @function\n"
    "la_rw_jump:\n" /* (uintptr_t target, volatile uint64_t* where) */
    "  .cfi_startproc\n"
    "  push %rbp\n" /* la_rw_wrpkru's epilogue pops it */
    "  .cfi_adjust_cfa_offset 8\n"
    "  mov %rdi, %r9\n"
    "  mov %rsi, %r8\n"
    "  mov $0x5a5a5a5a, %edi\n"
    "  xor %eax, %eax\n" /* PKRU 0: every key readable and writable */
    "  xor %ecx, %ecx\n"
    "  xor %edx, %edx\n"
    "  jmp *%r9\n"
    "  .cfi_endproc\n"
    ".size la_rw_jump, .-la_rw_jump\n"

    ".globl la_rw_xrstor_at\n"
    ".type la_rw_xrstor_at, @function\n"
    "la_rw_xrstor_at:\n" /* (uintptr_t p, long i): *(int*)(p + i - 0x52) */
    "  .cfi_startproc\n"
    "  mov %rsi, %rcx\n"
    "  .byte 0x8b, 0x44, 0x0f, 0xae\n" /* mov -0x52(%rdi,%rcx,1), %eax */
    "  .byte 0xa8, 0x01\n"             /* test $1, %al */
    "  ret\n"
    "  .cfi_endproc\n"
    ".size la_rw_xrstor_at, .-la_rw_xrstor_at\n"

    ".globl la_rw_xrstors_at\n"
    ".type la_rw_xrstors_at, @function\n"
    "la_rw_xrstors_at:\n" /* (uintptr_t p, long i): *(int*)(p + i - 0x39) */
    "  .cfi_startproc\n"
    "  mov %rsi, %rcx\n"
    "  .byte 0x8b, 0x44, 0x0f, 0xc7\n" /* mov -0x39(%rdi,%rcx,1), %eax */
    "  .byte 0x99\n"                   /* cltd */
    "  ret\n"
    "  .cfi_endproc\n"
    ".size la_rw_xrstors_at, .-la_rw_xrstors_at\n");

/* p is an address past kTable: the displacements bring it back. */
int la_rw_xrstor_at(uintptr_t p, long i);
int la_rw_xrstors_at(uintptr_t p, long i);

static const int kTable[8] = {11, 22, 33, 44, 55, 66, 77, 88};

/* kTable[i], read by the rewritten loads. */
int la_rw_xrstor(long i) {
  return la_rw_xrstor_at((uintptr_t)kTable + 0x52, i * 4);
}
int la_rw_xrstors(long i) {
  return la_rw_xrstors_at((uintptr_t)kTable + 0x39, i * 4);
}
