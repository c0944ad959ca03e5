// loader_cpp_test.cc: C++ inside: std::string, std::vector, std::map, and
// an exception thrown and caught in loaded code.
#include <stdint.h>
#include <stdlib.h>

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

// Takes every byte the compartment's heap will give (malloc returns null),
// then throws and catches an int: libstdc++ then allocates the exception
// from its emergency pool. Returns the caught object's address, or 0 if
// malloc never failed (nothing would be shown); *held gets the bytes held.
extern "C" uintptr_t cpp_exception_under_exhaustion(long* held) {
  struct Block {
    Block* next;
  };
  // A first throw gives this thread its block of libstdc++'s thread-local
  // exception globals (allocated at first use, as glibc's dynamic TLS is).
  try {
    throw 1;
  } catch (int) {
  }
  Block* blocks = nullptr;
  long bytes = 0;
  bool exhausted = false;
  for (size_t size : {size_t{1} << 20, size_t{65536}, size_t{4096},
                      size_t{256}, size_t{16}}) {
    for (;;) {
      auto* b = static_cast<Block*>(malloc(size));
      if (b == nullptr) {
        exhausted = true;
        break;
      }
      b->next = blocks;
      blocks = b;
      bytes += static_cast<long>(size);
    }
  }
  uintptr_t at = 0;
  try {
    throw 42;
  } catch (const int& e) {
    if (e == 42 && exhausted) at = reinterpret_cast<uintptr_t>(&e);
  }
  // Still exhausted after the throw: nothing was freed in between.
  if (void* p = malloc(16)) {
    free(p);
    at = 0;
  }
  while (blocks != nullptr) {
    Block* next = blocks->next;
    free(blocks);
    blocks = next;
  }
  *held = bytes;
  return at;
}
