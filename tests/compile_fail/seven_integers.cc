// Must not compile: the seventh integer argument would go on the stack.
#include "mpkbox/mpkbox.h"
int Use(int, int, int, int, int, int, int) { return 0; }
void Try(mpkbox::Compartment& box) {
  static_cast<void>(box.Call(&Use, 1, 2, 3, 4, 5, 6, 7));
}
