// Must not compile: long double travels on the x87 stack.
#include "mpkbox/mpkbox.h"
long double Use(long double x) { return x; }
void Try(mpkbox::Compartment& box) { static_cast<void>(box.Call(&Use, 1.0L)); }
