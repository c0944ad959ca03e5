#include "runtime/compartment_libc/bindings.h"

#include <string>

#include "absl/container/flat_hash_map.h"

namespace mpkbox::internal {
namespace {

// Every concern's table; one line each.
absl::Span<const LibcBinding> (*const kTables[])() = {
    &RuntimeLinkBindings,
    &SyscallBindings,
    &MemoryBindings,
    &LocaleBindings,
    &ProcessBindings,
    &TimeBindings,
    &RegexBindings,
    &StdioBindings,
    &FormatBindings,
    &ThreadBindings,
    &FileBindings,
    &RefusalBindings,
};

const absl::flat_hash_map<std::string, const LibcBinding*>& ByName() {
  static const auto* by_name = [] {
    auto* m = new absl::flat_hash_map<std::string, const LibcBinding*>;
    for (auto* table : kTables) {
      for (const LibcBinding& b : table()) m->emplace(b.name, &b);  // first wins
    }
    return m;
  }();
  return *by_name;
}

}  // namespace

const LibcBinding* FindLibcBinding(absl::string_view name) {
  auto it = ByName().find(name);
  return it == ByName().end() ? nullptr : it->second;
}

std::vector<const LibcBinding*> AllLibcBindings() {
  std::vector<const LibcBinding*> all;
  for (auto* table : kTables) {
    for (const LibcBinding& b : table()) all.push_back(&b);
  }
  return all;
}

}  // namespace mpkbox::internal
