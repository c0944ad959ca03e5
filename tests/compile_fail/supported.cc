// Must compile: the control for the cases above, with the same flags.
#include "mpkbox/mpkbox.h"
double Use(int, long, char*, float, double, bool) { return 0; }
void Try(mpkbox::Compartment& box) {
  static_cast<void>(box.Call(&Use, 1, 2L, nullptr, 1.0f, 2.0, true));
}
