/* loader_attack_constructor_test.cc: a constructor that calls fopen (which
   opens only what the files policy grants: nothing, so no file appears),
   then sigaction, an import mpkbox refuses (it would change the host's
   signal handling with the compartment's rights). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((constructor)) static void la_ctor_import(void) {
  const char* path = getenv("MPKBOX_TEST_FILE");
  FILE* f = fopen(path != NULL ? path : "/tmp/la_ctor_import.out", "w");
  if (f != NULL) fclose(f);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigaction(SIGUSR2, &sa, NULL);
}

int la_ok(int x) { return 2 * x + 1; }
