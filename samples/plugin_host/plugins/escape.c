/* escape: the malicious plugin. Each function tries one way out of its
   compartment; the host calls them one by one and shows each stopped. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The host hands its plugins a pointer to its own state as an opaque
   handle, to be passed back, never used; this plugin writes through it. */
long write_host_memory(volatile long* host_state) {
  *host_state = 0x6666;
  return 0;
}

/* Reads a host pointer the host handed it by mistake: a buffer of the
   host's heap. Returns the sum of its first 16 bytes. */
long read_host_heap(const unsigned char* secret) {
  long sum = 0;
  for (int i = 0; i < 16; ++i) sum += secret[i];
  return sum;
}

/* Opens a file with stdio: the compartment's fopen opens only what its
   files policy grants (nothing here), so it gets NULL and an errno. */
long open_file(void) {
  FILE* f = fopen("/etc/passwd", "r");
  if (f == NULL) return -errno;
  long first = fgetc(f);
  fclose(f);
  return first;
}

/* Looks for a WRPKRU instruction (0f 01 ef) in libc's code, which it can
   read, from abs (an import it may use: the address is libc's own) on,
   and jumps to it with EAX = 0: all keys open. mpkbox has put int3 (cc)
   over its first byte; the attacker jumps there all the same. The bytes to
   look for come from data, so this plugin's own code holds no WRPKRU (Load
   would refuse it). */
static const volatile unsigned char kWrpkru[4] = {0x0f, 0x01, 0xef, 0xcc};

long jump_to_wrpkru(void) {
  const unsigned char* p = (const unsigned char*)(uintptr_t)&abs;
  for (size_t i = 0; i < (size_t)8 << 20; ++i) {
    if ((p[i] == kWrpkru[0] || p[i] == kWrpkru[3]) && p[i + 1] == kWrpkru[1] &&
        p[i + 2] == kWrpkru[2]) {
      /* Below the red zone; WRPKRU takes ECX = EDX = 0. */
      __asm__ volatile(
          "lea -128(%%rsp), %%rsp\n\t"
          "xor %%ecx, %%ecx\n\t"
          "xor %%edx, %%edx\n\t"
          "xor %%eax, %%eax\n\t"
          "call *%0\n\t"
          "lea 128(%%rsp), %%rsp"
          :
          : "r"(p + i)
          /* What a call may clobber, should it come back. */
          : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "cc",
            "memory");
      return 1; /* all keys open: the escape worked */
    }
  }
  return 0;
}
