// Must not compile: callbacks take the same signatures as Call.
#include "mpkbox/mpkbox.h"
struct Point { int x, y; };
int Host(Point p) { return p.x; }
void Try(mpkbox::Compartment& box) {
  static_cast<void>(box.RegisterCallback(&Host));
}
