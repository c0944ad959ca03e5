/* loader_attack_refused_features_test.cc: an exported IFUNC definition and
   nothing that refers to it inside the object. */
static int la_ifunc_only_impl(int x) { return x + 1; }
static int (*la_ifunc_only_resolver(void))(int) { return la_ifunc_only_impl; }
int la_ifunc_only(int x) __attribute__((ifunc("la_ifunc_only_resolver")));

int la_ok(int x) { return 2 * x + 1; }
