/* loader_attack_refused_features_test.cc: an IFUNC resolver that returns
   an address outside the compartment's code (the host's abort), for the
   loader to bind where loaded code calls it. */
#include <stdlib.h>

static void (*la_evil_resolver(void))(void) { return abort; }
void la_ifunc_evil(void) __attribute__((ifunc("la_evil_resolver")));

int la_ok(int x) { return 2 * x + 1; }
