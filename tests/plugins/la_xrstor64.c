/* loader_attack_privileged_code_test.cc: rex.w xrstor, xrstor64 (%rdi) = 48 0f
   ae 2f. */
void la_xrstor64(void* area) {
  __asm__ volatile("xrstor64 (%0)" : : "D"(area), "a"(-1), "d"(-1) : "memory");
}
