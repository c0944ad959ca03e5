/* loader_attack_privileged_code_test.cc: xrstor (%rdi) = 0f ae 2f (loads PKRU
   when the mask in edx:eax asks for it). */
void la_xrstor(void* area) {
  __asm__ volatile("xrstor (%0)" : : "D"(area), "a"(-1), "d"(-1) : "memory");
}
