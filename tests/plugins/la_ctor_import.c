/* loader_attack_constructor_test.cc: a constructor that calls fopen, an import
   mpkbox refuses (it would run with the compartment's rights on host stdio). */
#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void la_ctor_import(void) {
  const char* path = getenv("MPKBOX_TEST_FILE");
  FILE* f = fopen(path != NULL ? path : "/tmp/la_ctor_import.out", "w");
  if (f != NULL) fclose(f);
}

int la_ok(int x) { return 2 * x + 1; }
