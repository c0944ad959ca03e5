// Must not compile: a struct parameter has no register of its own.
#include "mpkbox/mpkbox.h"
struct Point { int x, y; };
int Use(Point p) { return p.x; }
void Try(mpkbox::Compartment& box) { static_cast<void>(box.Call(&Use, Point{})); }
