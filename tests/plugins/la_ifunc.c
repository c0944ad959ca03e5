/* loader_attack_refused_features_test.cc: an IFUNC, called from inside the
   object too (its resolver would run with host rights in a naive loader). */
static int la_ifunc_impl(int x) { return x + 1; }
static int (*la_ifunc_resolver(void))(int) { return la_ifunc_impl; }
int la_ifunc(int x) __attribute__((ifunc("la_ifunc_resolver")));

int la_ifunc_caller(int x) { return la_ifunc(x) + 1; }
