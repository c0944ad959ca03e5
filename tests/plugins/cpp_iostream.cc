// loader_cpp_test.cc: a plugin that writes to std::cout. Its iostreams
// (libstdc++'s std::ios_base::Init) are built on the C library's stdio.
#include <iostream>

extern "C" int cpp_print(int x) {
  std::cout << "x = " << x << std::endl;
  return x;
}
