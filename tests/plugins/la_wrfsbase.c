/* loader_attack_privileged_code_test.cc: wrfsbase %rax = f3 48 0f ae d0 (moves
   the thread pointer the gate reads its state through). */
void la_wrfsbase(unsigned long value) {
  __asm__ volatile("wrfsbase %0" : : "a"(value));
}
