/* loader_attack_privileged_code_test.cc: xrstors (%rdi) = 0f c7 1f. */
void la_xrstors(void* area) {
  __asm__ volatile("xrstors (%0)" : : "D"(area), "a"(-1), "d"(-1) : "memory");
}
