#include "tests/test_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
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

MappingsSnapshot::MappingsSnapshot() {
  const int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n;
  while (size_ < sizeof(text_) &&
         (n = read(fd, text_ + size_, sizeof(text_) - size_)) > 0) {
    size_ += static_cast<size_t>(n);
  }
  close(fd);
}

int MappingsSnapshot::count() const {
  return static_cast<int>(std::count(text_, text_ + size_, '\n'));
}

std::string MappingsSnapshot::DiffFrom(const MappingsSnapshot& before) const {
  auto lines = [](const MappingsSnapshot& s) {
    std::set<std::string> out;
    std::istringstream in(std::string(s.text_, s.size_));
    for (std::string line; std::getline(in, line);) out.insert(line);
    return out;
  };
  const std::set<std::string> old_lines = lines(before);
  const std::set<std::string> new_lines = lines(*this);
  std::string out = "mappings added:\n";
  for (const std::string& line : new_lines) {
    if (old_lines.count(line) == 0) out += "  + " + line + "\n";
  }
  out += "mappings gone:\n";
  for (const std::string& line : old_lines) {
    if (new_lines.count(line) == 0) out += "  - " + line + "\n";
  }
  return out;
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
