// Uses the installed mpkbox: a call into a compartment and a callback out.
#include <mpkbox/mpkbox.h>

#include <cstdio>

namespace {

int Twice(mpkbox::Tainted<int> x) {
  return x.Verify([](int v) { return v >= 0 && v < 1000 ? 2 * v : 0; });
}

int MultiplyViaHost(int (*twice)(int), int a, int b) { return twice(a) * b; }

}  // namespace

int main() {
  if (!mpkbox::Runtime::IsSupported()) {
    // What this test checks (find_package, headers, link) is done.
    std::printf("mpkbox consumer: built and linked against the installed "
                "package; no PKU here, so no call was made\n");
    return 0;
  }
  auto box = mpkbox::Compartment::Create({.name = "consumer"});
  if (!box.ok()) {
    std::printf("mpkbox consumer: Create failed: %s\n",
                box.status().ToString().c_str());
    return 1;
  }
  auto twice = (*box)->RegisterCallback(&Twice);
  if (!twice.ok()) {
    std::printf("mpkbox consumer: RegisterCallback failed: %s\n",
                twice.status().ToString().c_str());
    return 1;
  }
  auto r = (*box)->Call(&MultiplyViaHost, twice->get(), 3, 7);
  if (!r.ok()) {
    std::printf("mpkbox consumer: Call failed: %s\n",
                r.status().ToString().c_str());
    return 1;
  }
  std::printf("mpkbox consumer: 2 * 3 * 7 = %d in compartment '%s'\n",
              r->UnverifiedValue("printed"), (*box)->name().c_str());
  return 0;
}
