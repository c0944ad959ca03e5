/* Called through a lazily bound PLT slot of lazy_caller.so. */
double lazy_callee_mix(double a, double b, double c) { return a * 3 + b * 5 + c; }
