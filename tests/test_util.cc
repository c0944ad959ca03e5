#include "tests/test_util.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace mpkbox::testing {

int CountMappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) ++n;
  return n;
}

int PkeyOf(uintptr_t addr) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo, hi;
    char dash;
    std::istringstream head(line);
    if (line.find(':') > line.find(' ') &&
        (head >> std::hex >> lo >> dash >> hi)) {
      inside = dash == '-' && addr >= lo && addr < hi;
      continue;
    }
    if (inside && line.rfind("ProtectionKey:", 0) == 0) {
      return std::stoi(line.substr(14));
    }
  }
  return -1;
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
