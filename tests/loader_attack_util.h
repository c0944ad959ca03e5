// Attacks on Compartment::Load (DESIGN.md 3 "Load", 6 items 1-3). One binary
// per class:
// - loader_attack_constructor_test.cc: hostile constructors;
// - loader_attack_privileged_code_test.cc: privileged instructions in loaded
//   code, and code changed after the scan;
// - loader_attack_gadget_rewrite_test.cc: accidental privileged byte
//   sequences, rewritten or refused;
// - loader_attack_refused_features_test.cc: features the loader refuses;
// - loader_attack_imports_test.cc: refused imports and exposed host
//   functions;
// - loader_attack_isolation_test.cc: isolation of the loaded data;
// - loader_attack_malformed_test.cc: malformed ELF files parsed with host
//   rights;
// - loader_attack_reset_test.cc: Reset of loaded objects.
// The plugins are plain C shared objects in tests/plugins/ (la_*.c), built by
// CMake and never linked into a test; corrupted copies are written to a
// temporary directory.
//
// Nothing in these tests may encode WRPKRU/XRSTOR/WRFSBASE in its own machine
// code (the gadget guard of strict mode would have to guard it): byte
// patterns are written as hex strings and decoded at run time.
//
// This file: what those binaries share.
#ifndef MPKBOX_TESTS_LOADER_ATTACK_UTIL_H_
#define MPKBOX_TESTS_LOADER_ATTACK_UTIL_H_

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mpkbox/mpkbox.h"

namespace mpkbox::loader_attack {

// The path of a test plugin (tests/plugins/NAME.c) as built.
std::string Plugin(const char* name);
std::string RealPath(const std::string& path);

std::vector<uint8_t> ReadBytes(const std::string& path);
void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes);
bool FileExists(const std::string& path);

// "0f01ef" -> {0x0f, 0x01, 0xef}, decoded at run time (see the top).
std::vector<uint8_t> Hex(const std::string& hex);

// A private temporary directory, removed with what is in it.
class TempDir {
 public:
  TempDir();
  // For a death test: the child is this binary run again for the same test,
  // so it finds the directory through its parent's pid; the parent owns it.
  static TempDir ForDeathTest(const std::string& test);
  TempDir(TempDir&& other) noexcept;
  ~TempDir();
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  TempDir(std::string path, bool owner);
  std::string path_;
  bool owner_ = true;
};

// A copy of a shared object's bytes with typed access for patching.
class ElfBytes {
 public:
  explicit ElfBytes(std::vector<uint8_t> bytes) : b_(std::move(bytes)) {}
  std::vector<uint8_t>& bytes() { return b_; }

  Elf64_Ehdr* eh() { return reinterpret_cast<Elf64_Ehdr*>(b_.data()); }
  Elf64_Phdr* ph(size_t i) {
    return reinterpret_cast<Elf64_Phdr*>(b_.data() + eh()->e_phoff) + i;
  }
  // The n-th program header of `type` (for PT_LOAD, in file order).
  Elf64_Phdr* Phdr(uint32_t type, int n = 0);
  Elf64_Phdr* ExecLoad();
  // File offset of a virtual address inside some PT_LOAD's file bytes.
  size_t Off(uint64_t vaddr);
  uint64_t VaddrOfOffset(size_t off);
  Elf64_Dyn* Dyn(int64_t tag);
  template <typename T>
  T* At(uint64_t vaddr) {
    return reinterpret_cast<T*>(b_.data() + Off(vaddr));
  }
  // The i-th entry of DT_RELA (or of DT_JMPREL).
  Elf64_Rela* Rela(size_t i, bool plt = false);
  size_t RelaCount(bool plt = false);
  Elf64_Shdr* Section(uint32_t type);
  // Index of a dynamic symbol, from the section headers; 0 if none.
  uint32_t DynSym(const std::string& name);
  Elf64_Sym* Sym(uint32_t index);
  // The first relocation of `table` whose type is `type`.
  Elf64_Rela* FirstRela(uint32_t type, bool plt = false);
  // The end of the last PT_LOAD's file bytes.
  size_t LoadedFileEnd();

 private:
  std::vector<uint8_t> b_;
};

// mpkbox-scan's exit status and what it printed (both streams).
struct ScanRun {
  int exit_code = -1;
  std::string output;
};
ScanRun RunScan(const std::vector<std::string>& files);

// One sequence mpkbox-scan reports, and what Load does with it.
struct ScanLine {
  uint64_t offset;
  uint64_t vaddr;
  std::string instruction;
  std::string bytes;    // "0f 01 ef"
  std::string verdict;  // "real", "rewritable" or "not rewritable"
  std::string detail;   // how it is rewritten, or why not
};
// The sequences mpkbox-scan printed for `file`.
std::vector<ScanLine> ParseScan(const std::string& output,
                                const std::string& file);

// Host memory the attacks aim at: a key-0 global and a host-heap word
// (trusted key).
extern volatile uint64_t g_host_word;
constexpr uint64_t kHostWordValue = 0x1122334455667788ull;

// The address la_ctor_attack's constructor attacks, through la_target, a
// host function the tests expose to it.
extern uintptr_t g_attack_target;
uint64_t AttackTarget();

// The compartment's name, quoted as every message has it.
std::string Named(const Compartment& box);

// Reset, then a well-behaved plugin in the same compartment works.
void ExpectCompartmentWorks(Compartment* box);

// The process is fine: host allocation, and a fresh compartment with a
// plugin works.
void ExpectProcessWorks();

}  // namespace mpkbox::loader_attack

#endif  // MPKBOX_TESTS_LOADER_ATTACK_UTIL_H_
