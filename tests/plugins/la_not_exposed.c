/* loader_attack_imports_test.cc: imports a function the test binary defines
   (and exports) but never exposes to the compartment. */
extern void mpkbox_not_exposed(void);

int la_call_not_exposed(void) {
  mpkbox_not_exposed();
  return 1;
}
int la_ok(int x) { return 2 * x + 1; }
