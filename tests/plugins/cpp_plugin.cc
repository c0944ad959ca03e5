// loader_cpp_test.cc: C++ inside: std::string, std::vector, std::map, and
// an exception thrown and caught in loaded code.
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

int Parse(const std::string& word) {
  if (word.empty() || word[0] < '0' || word[0] > '9') {
    throw std::invalid_argument("not a number: " + word);
  }
  return std::stoi(word);
}

}  // namespace

// Sums the numbers among space-separated words; counts the others (each
// one an exception thrown and caught inside). Returns sum * 1000 + others.
extern "C" long cpp_sum_words(const char* text) {
  std::vector<std::string> words;
  std::string current;
  for (const char* p = text; *p; ++p) {
    if (*p == ' ') {
      if (!current.empty()) words.push_back(current);
      current.clear();
    } else {
      current += *p;
    }
  }
  if (!current.empty()) words.push_back(current);
  std::map<std::string, int> seen;
  long sum = 0, others = 0;
  for (const std::string& w : words) {
    ++seen[w];
    try {
      sum += Parse(w);
    } catch (const std::invalid_argument& e) {
      others += std::string(e.what()).size() > 0 ? 1 : 0;
    }
  }
  return sum * 1000 + others + 100000 * static_cast<long>(seen.size());
}

namespace {

void (*g_hook)(int) = nullptr;

// A function-local static with a destructor: registered with __cxa_atexit
// at its first use, run by __cxa_finalize from the object's destructors.
struct Reporter {
  ~Reporter() {
    if (g_hook != nullptr) g_hook(static_cast<int>(names.size()));
  }
  std::vector<std::string> names;
};

Reporter& TheReporter() {
  static Reporter reporter;
  return reporter;
}

}  // namespace

// Makes the static; its destructor calls `hook` with how many names it
// holds.
extern "C" void cpp_report_at_exit(void (*hook)(int), int names) {
  g_hook = hook;
  for (int i = 0; i < names; ++i) {
    TheReporter().names.push_back("name " + std::to_string(i));
  }
}

// An exception nobody inside catches: it reaches the gate.
extern "C" int cpp_throw_out(int x) {
  if (x > 0) throw std::runtime_error("escapes");
  return x;
}
