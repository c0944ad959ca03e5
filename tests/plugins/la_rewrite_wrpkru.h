/* la_rw_wrpkru's assembly, for la_rewrite.c (with CFI) and
   la_rewrite_no_cfi.c (without): CFI(x) expands to x or to nothing.
   (int a, int b, int* out): *out = rol(a,15) ^ (a+b), through
   rol $15,%eax (c1 c0 0f) then add %ebp,%edi (01 ef): 0f 01 ef, the
   pattern of Debian's libnettle; the add can be 03 fd. */
#ifndef MPKBOX_TESTS_PLUGINS_LA_REWRITE_WRPKRU_H_
#define MPKBOX_TESTS_PLUGINS_LA_REWRITE_WRPKRU_H_

#define LA_RW_WRPKRU(name, CFI)                                   \
  ".text\n"                                                       \
  ".globl " name "\n"                                             \
  ".type " name ", @function\n" name ":\n"                        \
  CFI("  .cfi_startproc\n")                                       \
  "  push %rbp\n"                                                 \
  CFI("  .cfi_adjust_cfa_offset 8\n  .cfi_offset %rbp, -16\n")    \
  "  mov %rdx, %r8\n"                                             \
  "  mov %esi, %ebp\n"                                            \
  "  mov %edi, %eax\n"                                            \
  "  .byte 0xc1, 0xc0, 0x0f\n" /* rol $15, %eax */                \
  "  .byte 0x01, 0xef\n"       /* add %ebp, %edi */               \
  "  xor %edi, %eax\n"                                            \
  "  mov %eax, (%r8)\n"                                           \
  "  pop %rbp\n"                                                  \
  CFI("  .cfi_adjust_cfa_offset -8\n")                            \
  "  ret\n"                                                       \
  CFI("  .cfi_endproc\n")                                         \
  ".size " name ", .-" name "\n"

#endif  /* MPKBOX_TESTS_PLUGINS_LA_REWRITE_WRPKRU_H_ */
