#include "tests/test_util.h"

#include <fstream>

namespace mpkbox::testing {

int CountMappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) ++n;
  return n;
}

}  // namespace mpkbox::testing
