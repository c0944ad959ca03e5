#include "tests/test_util.h"

#include <cstring>
#include <fstream>

namespace mpkbox::testing {

int CountMappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) ++n;
  return n;
}

std::vector<uintptr_t> FindBytes(const char* begin, const char* end,
                                 const std::vector<uint8_t>& pattern) {
  std::vector<uintptr_t> hits;
  for (const char* p = begin; p + pattern.size() <= end; ++p) {
    if (memcmp(p, pattern.data(), pattern.size()) == 0) {
      hits.push_back(reinterpret_cast<uintptr_t>(p));
    }
  }
  return hits;
}

}  // namespace mpkbox::testing
