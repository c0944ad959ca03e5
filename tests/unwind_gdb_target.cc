// Run under gdb by gdb_backtrace.cmake: breakpoints inside a compartment and
// in a host callback called from it; gdb's backtraces must cross the gate.
#include <cstdio>

#include "mpkbox/mpkbox.h"

extern "C" {
__attribute__((noinline)) int mpkbox_gdb_callback(int x) {
  asm volatile("");
  return x + 1;
}
__attribute__((noinline)) int mpkbox_gdb_inside(int (*cb)(int)) {
  int r = cb(41);
  asm volatile("");
  return r;
}
__attribute__((noinline)) int mpkbox_gdb_host_caller(mpkbox::Compartment* box,
                                                     int (*cb)(int)) {
  auto r = box->Call(&mpkbox_gdb_inside, cb);
  asm volatile("");
  return r.ok() ? r->UnverifiedValue("printed") : -1;
}
}

int main() {
  if (!mpkbox::Runtime::IsSupported()) {
    std::printf("unwind_gdb_target: skipped, no PKU on this machine\n");
    return 0;
  }
  auto box = mpkbox::Compartment::Create({.name = "gdb"});
  if (!box.ok()) return 2;
  auto cb = (*box)->RegisterCallback(&mpkbox_gdb_callback);
  if (!cb.ok()) return 2;
  std::printf("result %d\n", mpkbox_gdb_host_caller(box->get(), cb->get()));
  return 0;
}
