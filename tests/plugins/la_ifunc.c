/* An exported IFUNC, called from inside the object too (JUMP_SLOT), and a
   static one (R_X86_64_IRELATIVE). Its resolver must run inside
   the compartment: it records the PKRU it ran with (RDPKRU, which reads
   only). loader_tls_test.cc checks both. */
static unsigned la_resolver_pkru = ~0u;
static int la_ifunc_impl(int x) { return x + 1; }
static int (*la_ifunc_resolver(void))(int) {
  unsigned eax, edx;
  __asm__ volatile("rdpkru" : "=a"(eax), "=d"(edx) : "c"(0));
  la_resolver_pkru = eax;
  return la_ifunc_impl;
}
int la_ifunc(int x) __attribute__((ifunc("la_ifunc_resolver")));

int la_ifunc_caller(int x) { return la_ifunc(x) + 1; }
unsigned la_ifunc_resolver_pkru(void) { return la_resolver_pkru; }

static int la_times_ten(int x) { return 10 * x; }
static int (*la_local_resolver(void))(int) { return la_times_ten; }
static int la_local_ifunc(int x) __attribute__((ifunc("la_local_resolver")));
int la_local_caller(int x) { return la_local_ifunc(x); }
