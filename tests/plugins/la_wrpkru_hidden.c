/* loader_attack_privileged_code_test.cc: WRPKRU hidden in an immediate: movl
   $0xef010f, %eax encodes as b8 0f 01 ef 00; a jump to its second byte runs
   WRPKRU. */
int la_wrpkru_hidden(void) {
  int r;
  __asm__ volatile("movl $0xef010f, %0" : "=a"(r));
  return r;
}
