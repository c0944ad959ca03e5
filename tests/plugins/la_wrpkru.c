/* loader_attack_privileged_code_test.cc: a plain WRPKRU (0f 01 ef). */
void la_wrpkru(void) { __asm__ volatile(".byte 0x0f, 0x01, 0xef"); }
