/* loader_attack_imports_test.cc: calls host_log, a function the host
   exposes. */
extern int host_log(int a, int b);

int la_use_host(int a, int b) { return host_log(a, b) + 1; }
int la_ok(int x) { return 2 * x + 1; }
