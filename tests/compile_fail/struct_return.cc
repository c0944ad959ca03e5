// Must not compile: a struct result does not come back in rax or xmm0.
#include "mpkbox/mpkbox.h"
struct Pair { long a, b; };
Pair Make() { return {}; }
void Try(mpkbox::Compartment& box) { static_cast<void>(box.Call(&Make)); }
