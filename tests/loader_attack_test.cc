// Attacks on Compartment::Load (DESIGN.md 3 "Load", 6 items 1-3): hostile
// constructors, privileged instructions hidden in loaded code, features the
// loader refuses, refused imports, exposed host functions, isolation of the
// loaded data, malformed ELF files parsed with host rights, and Reset of
// loaded objects. The plugins are plain C shared objects in tests/plugins/
// (la_*.c), built by CMake and never linked into this binary; corrupted
// copies are written to a temporary directory.
//
// Comments that start "Found at a0e9148" describe an attack that succeeded
// (or a host crash) when the tests were written, and what the fix changed.
//
// Nothing in this file may encode WRPKRU/XRSTOR/WRFSBASE in its own machine
// code (the gadget guard of strict mode would have to guard it): byte
// patterns are written as hex strings and decoded at run time.
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/keys/pku.h"
#include "tests/test_util.h"

// Defined here, visible to dlsym (--export-dynamic-symbol), never exposed to
// a compartment: la_not_exposed.so imports it.
extern "C" {
volatile int mpkbox_not_exposed_ran = 0;
volatile uint32_t mpkbox_not_exposed_pkru = 0xffffffff;
void mpkbox_not_exposed(void) {
  mpkbox_not_exposed_ran = 1;
  mpkbox_not_exposed_pkru = mpkbox::internal::ReadPkru();
}
}

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::PkeyOf;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// ---------------------------------------------------------------- helpers

std::string Plugin(const char* name) {
  return std::string(LA_PLUGIN_DIR) + "/" + name + ".so";
}

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::vector<uint8_t> bytes;
  FILE* f = fopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  if (f == nullptr) return bytes;
  uint8_t buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
    bytes.insert(bytes.end(), buf, buf + n);
  }
  fclose(f);
  return bytes;
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  ASSERT_EQ(fclose(f), 0);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// "0f01ef" -> {0x0f, 0x01, 0xef}, decoded at run time (see the top).
std::vector<uint8_t> Hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(
        static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// Offsets in `bytes` where `pattern` starts.
std::vector<size_t> Find(const std::vector<uint8_t>& bytes,
                         const std::vector<uint8_t>& pattern) {
  std::vector<size_t> hits;
  for (size_t i = 0; i + pattern.size() <= bytes.size(); ++i) {
    if (memcmp(bytes.data() + i, pattern.data(), pattern.size()) == 0) {
      hits.push_back(i);
    }
  }
  return hits;
}

// A private temporary directory, removed with what is in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mpkbox_loader_attack.XXXXXX";
    const char* d = mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    if (d != nullptr) path_ = d;
  }
  // For a death test: the child is this binary run again for the same test,
  // so it finds the directory through its parent's pid; the parent owns it.
  static TempDir ForDeathTest(const std::string& test) {
    const bool child = !GTEST_FLAG_GET(internal_run_death_test).empty();
    const pid_t parent = child ? getppid() : getpid();
    TempDir dir(
        absl::StrCat("/tmp/mpkbox_loader_attack_death.", parent, ".", test),
        /*owner=*/!child);
    if (!child) mkdir(dir.path_.c_str(), 0700);
    return dir;
  }
  TempDir(TempDir&& other) noexcept
      : path_(std::move(other.path_)), owner_(other.owner_) {
    other.path_.clear();
  }
  ~TempDir() {
    if (path_.empty() || !owner_) return;
    if (DIR* dir = opendir(path_.c_str())) {
      while (dirent* e = readdir(dir)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
          unlink((path_ + "/" + e->d_name).c_str());
        }
      }
      closedir(dir);
    }
    rmdir(path_.c_str());
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  TempDir(std::string path, bool owner)
      : path_(std::move(path)), owner_(owner) {}
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
  Elf64_Phdr* Phdr(uint32_t type, int n = 0) {
    for (size_t i = 0; i < eh()->e_phnum; ++i) {
      if (ph(i)->p_type == type && n-- == 0) return ph(i);
    }
    ADD_FAILURE() << "no program header of type " << type;
    return nullptr;
  }
  Elf64_Phdr* ExecLoad() {
    for (size_t i = 0; i < eh()->e_phnum; ++i) {
      if (ph(i)->p_type == PT_LOAD && (ph(i)->p_flags & PF_X)) return ph(i);
    }
    ADD_FAILURE() << "no executable PT_LOAD";
    return nullptr;
  }
  // File offset of a virtual address inside some PT_LOAD's file bytes.
  size_t Off(uint64_t vaddr) {
    for (size_t i = 0; i < eh()->e_phnum; ++i) {
      const Elf64_Phdr* p = ph(i);
      if (p->p_type == PT_LOAD && vaddr >= p->p_vaddr &&
          vaddr < p->p_vaddr + p->p_filesz) {
        return p->p_offset + (vaddr - p->p_vaddr);
      }
    }
    ADD_FAILURE() << "vaddr 0x" << std::hex << vaddr << " is not in the file";
    return 0;
  }
  uint64_t VaddrOfOffset(size_t off) {
    for (size_t i = 0; i < eh()->e_phnum; ++i) {
      const Elf64_Phdr* p = ph(i);
      if (p->p_type == PT_LOAD && off >= p->p_offset &&
          off < p->p_offset + p->p_filesz) {
        return p->p_vaddr + (off - p->p_offset);
      }
    }
    ADD_FAILURE() << "offset 0x" << std::hex << off << " is not loaded";
    return 0;
  }
  Elf64_Dyn* Dyn(int64_t tag) {
    const Elf64_Phdr* d = Phdr(PT_DYNAMIC);
    if (d == nullptr) return nullptr;
    auto* dyn = reinterpret_cast<Elf64_Dyn*>(b_.data() + d->p_offset);
    for (size_t i = 0; i < d->p_filesz / sizeof(Elf64_Dyn); ++i) {
      if (dyn[i].d_tag == tag) return &dyn[i];
      if (dyn[i].d_tag == DT_NULL) break;
    }
    ADD_FAILURE() << "no dynamic entry with tag " << tag;
    return nullptr;
  }
  template <typename T>
  T* At(uint64_t vaddr) {
    return reinterpret_cast<T*>(b_.data() + Off(vaddr));
  }
  // The i-th entry of DT_RELA (or of DT_JMPREL).
  Elf64_Rela* Rela(size_t i, bool plt = false) {
    Elf64_Dyn* table = Dyn(plt ? DT_JMPREL : DT_RELA);
    Elf64_Dyn* size = Dyn(plt ? DT_PLTRELSZ : DT_RELASZ);
    if (table == nullptr || size == nullptr) return nullptr;
    EXPECT_LT(i, size->d_un.d_val / sizeof(Elf64_Rela));
    return At<Elf64_Rela>(table->d_un.d_ptr) + i;
  }
  size_t RelaCount(bool plt = false) {
    Elf64_Dyn* size = Dyn(plt ? DT_PLTRELSZ : DT_RELASZ);
    return size != nullptr ? size->d_un.d_val / sizeof(Elf64_Rela) : 0;
  }
  Elf64_Shdr* Section(uint32_t type) {
    auto* sh = reinterpret_cast<Elf64_Shdr*>(b_.data() + eh()->e_shoff);
    for (size_t i = 0; i < eh()->e_shnum; ++i) {
      if (sh[i].sh_type == type) return &sh[i];
    }
    ADD_FAILURE() << "no section of type " << type;
    return nullptr;
  }
  // Index of a dynamic symbol, from the section headers; 0 if none.
  uint32_t DynSym(const std::string& name) {
    Elf64_Shdr* dynsym = Section(SHT_DYNSYM);
    if (dynsym == nullptr) return 0;
    auto* sh = reinterpret_cast<Elf64_Shdr*>(b_.data() + eh()->e_shoff);
    const char* str = reinterpret_cast<const char*>(
        b_.data() + sh[dynsym->sh_link].sh_offset);
    auto* syms = reinterpret_cast<Elf64_Sym*>(b_.data() + dynsym->sh_offset);
    for (uint32_t i = 1; i < dynsym->sh_size / sizeof(Elf64_Sym); ++i) {
      if (name == str + syms[i].st_name) return i;
    }
    return 0;
  }
  Elf64_Sym* Sym(uint32_t index) {
    Elf64_Shdr* dynsym = Section(SHT_DYNSYM);
    return reinterpret_cast<Elf64_Sym*>(b_.data() + dynsym->sh_offset) + index;
  }
  // The first relocation of `table` whose type is `type`.
  Elf64_Rela* FirstRela(uint32_t type, bool plt = false) {
    for (size_t i = 0; i < RelaCount(plt); ++i) {
      if (ELF64_R_TYPE(Rela(i, plt)->r_info) == type) return Rela(i, plt);
    }
    ADD_FAILURE() << "no relocation of type " << type;
    return nullptr;
  }
  // The end of the last PT_LOAD's file bytes.
  size_t LoadedFileEnd() {
    size_t end = 0;
    for (size_t i = 0; i < eh()->e_phnum; ++i) {
      if (ph(i)->p_type == PT_LOAD) {
        end = std::max<size_t>(end, ph(i)->p_offset + ph(i)->p_filesz);
      }
    }
    return end;
  }

 private:
  std::vector<uint8_t> b_;
};

// Host memory the attacks aim at: a key-0 global and a host-heap word
// (trusted key).
volatile uint64_t g_host_word = 0x1122334455667788ull;
constexpr uint64_t kHostWordValue = 0x1122334455667788ull;


// While it lives, `environ` is an array of this binary's key-0 data holding
// NAME=VALUE only: compartment code reads the environment with getenv, and
// setenv would put it on the host heap, which compartments cannot read
// (GetenvSeesNoEnvironment).
char g_env_entry[256];
char* g_env_array[2];
class KeyZeroEnvironment {
 public:
  KeyZeroEnvironment(const std::string& name, const std::string& value)
      : saved_(environ) {
    snprintf(g_env_entry, sizeof(g_env_entry), "%s=%s", name.c_str(),
             value.c_str());
    g_env_array[0] = g_env_entry;
    g_env_array[1] = nullptr;
    environ = g_env_array;
  }
  ~KeyZeroEnvironment() { environ = saved_; }

 private:
  char** saved_;
};

// The compartment's name, quoted as every message has it.
std::string Named(const Compartment& box) { return "'" + box.name() + "'"; }

// Reset, then a well-behaved plugin in the same compartment works.
void ExpectCompartmentWorks(Compartment* box) {
  absl::Status reset = box->Reset();
  ASSERT_TRUE(reset.ok()) << reset;
  absl::Status load = box->Load(Plugin("la_data"));
  ASSERT_TRUE(load.ok()) << load;
  auto ok = box->Lookup<int(int)>("la_ok");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Value(box->Call(*ok, 20)), 41);
  auto counter = box->Lookup<int()>("la_get_counter");
  ASSERT_TRUE(counter.ok()) << counter.status();
  EXPECT_EQ(Value(box->Call(*counter)), 41);
}

// The process is fine: host allocation, and a fresh compartment with a
// plugin works.
void ExpectProcessWorks() {
  std::unique_ptr<int[]> host(new int[1000]);
  for (int i = 0; i < 1000; ++i) host[i] = i;
  EXPECT_EQ(host[999], 999);
  auto fresh = MakeBox({.name = "fresh"});
  ASSERT_NE(fresh, nullptr);
  ASSERT_TRUE(fresh->Load(Plugin("la_data")).ok());
  auto ok = fresh->Lookup<int(int)>("la_ok");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Value(fresh->Call(*ok, 1)), 3);
}

struct ScanRun {
  int exit_code = -1;
  std::string output;
};

// mpkbox-scan FILE...: its exit status and what it printed (both streams).
ScanRun RunScan(const std::vector<std::string>& files) {
  std::string cmd = std::string("'") + MPKBOX_SCAN_BINARY + "'";
  for (const std::string& f : files) cmd += " '" + f + "'";
  cmd += " 2>&1";
  ScanRun run;
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return run;
  char buf[1024];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) run.output.append(buf, n);
  const int status = pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

struct ScanLine {
  uint64_t offset;
  uint64_t vaddr;
  std::string instruction;
};

// The findings mpkbox-scan printed for `file`.
std::vector<ScanLine> ParseScan(const std::string& output,
                                const std::string& file) {
  std::vector<ScanLine> lines;
  const std::regex re(
      "(.*): file offset 0x([0-9a-f]+) \\(vaddr 0x([0-9a-f]+)\\): (\\w+)");
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    std::smatch m;
    const std::string line = output.substr(start, end - start);
    if (std::regex_match(line, m, re) && m[1] == file) {
      lines.push_back({std::stoull(m[2], nullptr, 16),
                       std::stoull(m[3], nullptr, 16), m[4]});
    }
    start = end + 1;
  }
  return lines;
}

// The "file offset 0x..." of a Load error, or -1.
int64_t OffsetInMessage(absl::string_view message) {
  std::smatch m;
  const std::string s(message);
  if (!std::regex_search(s, m, std::regex("file offset 0x([0-9a-f]+)"))) {
    return -1;
  }
  return static_cast<int64_t>(std::stoull(m[1], nullptr, 16));
}

// ------------------------------------------- 1. constructors attack the host

// The address la_ctor_attack's constructor attacks (through la_target, a
// host function the tests expose to it).
uintptr_t g_attack_target = 0;
uint64_t AttackTarget() { return g_attack_target; }

// The constructor runs inside the compartment during Load and writes the
// host address la_target gives it: a key-0 global, then a host-heap word
// (trusted key). Load fails with kAborted naming the
// compartment and the file; the host's memory is unchanged.
TEST(LoaderAttackTest, ConstructorWritingHostMemoryFailsLoad) {
  auto* heap_word = new uint64_t(kHostWordValue);
  struct Target {
    const char* what;
    volatile uint64_t* address;
  } targets[] = {{"key-0 global", &g_host_word}, {"host heap", heap_word}};
  for (const Target& t : targets) {
    SCOPED_TRACE(t.what);
    auto box = MakeBox({.name = "ctor-attack"});
    ASSERT_NE(box, nullptr);
    const std::string path = Plugin("la_ctor_attack");
    g_attack_target = reinterpret_cast<uintptr_t>(t.address);
    ASSERT_TRUE(box->Expose("la_target", &AttackTarget).ok());
    absl::Status s = box->Load(path);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
    EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
    EXPECT_THAT(std::string(s.message()), HasSubstr("constructor"));
    EXPECT_EQ(*t.address, kHostWordValue);
    const FaultReport* f = box->last_fault();
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->signal, SIGSEGV);
    EXPECT_EQ(f->code, SEGV_PKUERR) << f->what;  // compartment rights
    EXPECT_EQ(f->address, reinterpret_cast<uintptr_t>(t.address));
    EXPECT_EQ(f->compartment, box->name());
    // Nothing of the failed object is visible.
    EXPECT_EQ(box->Lookup<int(int)>("la_ok").status().code(),
              absl::StatusCode::kNotFound);
    ExpectCompartmentWorks(box.get());
  }
  EXPECT_EQ(g_host_word, kHostWordValue);
  EXPECT_EQ(*heap_word, kHostWordValue);
  delete heap_word;
  ExpectProcessWorks();
}

// Control for the test above: without a target the constructor does
// nothing and the plugin loads and works.
TEST(LoaderAttackTest, ConstructorWithoutTargetLoads) {
  auto box = MakeBox({.name = "ctor-benign"});
  g_attack_target = 0;
  ASSERT_TRUE(box->Expose("la_target", &AttackTarget).ok());
  absl::Status s = box->Load(Plugin("la_ctor_attack"));
  ASSERT_TRUE(s.ok()) << s;
  auto ok = box->Lookup<int(int)>("la_ok");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Value(box->Call(*ok, 4)), 9);
}

// A constructor calling fopen, a refused import: Load fails with
// kPermissionDenied naming the import; no file appears.
// Found at a0e9148, fixed since: fopen is bound to glibc's own fopen, not to a refused-import
// trap (see RefusedImportsAreNotBoundToLibc), so the constructor runs
// glibc's fopen with compartment rights and faults on a key-0 write inside
// it: kAborted without the import's name. No file is created (the fault
// comes first, and the syscall policy would deny the open).
TEST(LoaderAttackTest, ConstructorCallingRefusedImportFailsLoad) {
  TempDir dir;
  const std::string out = dir.File("from_ctor.txt");
  auto box = MakeBox({.name = "ctor-import"});
  const std::string path = Plugin("la_ctor_import");
  absl::Status s;
  {
    KeyZeroEnvironment env("MPKBOX_TEST_FILE", out);
    s = box->Load(path);
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'fopen'"));
  EXPECT_FALSE(FileExists(out));
  ExpectCompartmentWorks(box.get());
  ExpectProcessWorks();
}

// --------------------------------- 2. privileged instructions in loaded code

struct PrivilegedCase {
  const char* plugin;
  const char* instruction;  // as Load and mpkbox-scan name it
  const char* hex;          // its bytes at the reported offset
};

class PrivilegedInstructionTest
    : public ::testing::TestWithParam<PrivilegedCase> {};

// Load refuses the object with kPermissionDenied naming the compartment,
// the file, the file offset and the instruction; the offset is the one
// mpkbox-scan prints, and the file holds the instruction's bytes there.
// mpkbox-scan exits 1. Nothing of the object stays visible and the
// compartment works afterwards.
TEST_P(PrivilegedInstructionTest, LoadRefusesAndScanReportsTheSameOffset) {
  const PrivilegedCase& c = GetParam();
  const std::string path = Plugin(c.plugin);
  const std::vector<uint8_t> file = ReadBytes(path);
  auto box = MakeBox({.name = std::string("priv-") + c.plugin});
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  const std::string msg(s.message());
  EXPECT_THAT(msg, HasSubstr(Named(*box)));
  EXPECT_THAT(msg, HasSubstr(RealPath(path)));
  EXPECT_THAT(msg, HasSubstr(std::string(" ") + c.instruction + " at"));
  const int64_t offset = OffsetInMessage(msg);
  ASSERT_GE(offset, 0) << msg;
  const std::vector<uint8_t> expected = Hex(c.hex);
  ASSERT_LE(static_cast<size_t>(offset) + expected.size(), file.size());
  EXPECT_EQ(std::vector<uint8_t>(file.begin() + offset,
                                 file.begin() + offset + expected.size()),
            expected)
      << "bytes at file offset 0x" << std::hex << offset;
  // The offset lies in the executable segment.
  ElfBytes elf(file);
  const Elf64_Phdr* text = elf.ExecLoad();
  ASSERT_NE(text, nullptr);
  EXPECT_GE(static_cast<uint64_t>(offset), text->p_offset);
  EXPECT_LT(static_cast<uint64_t>(offset), text->p_offset + text->p_filesz);

  const ScanRun scan = RunScan({path});
  EXPECT_EQ(scan.exit_code, 1) << scan.output;
  const std::vector<ScanLine> found = ParseScan(scan.output, path);
  ASSERT_FALSE(found.empty()) << scan.output;
  EXPECT_EQ(found[0].offset, static_cast<uint64_t>(offset)) << scan.output;
  EXPECT_EQ(found[0].instruction, c.instruction);
  EXPECT_EQ(found[0].vaddr, elf.VaddrOfOffset(offset));

  // Nothing of it is visible.
  EXPECT_EQ(box->Lookup<void()>(c.plugin).status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

INSTANTIATE_TEST_SUITE_P(
    Plugins, PrivilegedInstructionTest,
    ::testing::Values(PrivilegedCase{"la_wrpkru", "WRPKRU", "0f01ef"},
                      PrivilegedCase{"la_wrpkru_hidden", "WRPKRU", "0f01ef00"},
                      PrivilegedCase{"la_xrstor", "XRSTOR", "0fae2f"},
                      PrivilegedCase{"la_xrstors", "XRSTORS", "0fc71f"},
                      PrivilegedCase{"la_xrstor64", "XRSTOR64", "480fae2f"},
                      PrivilegedCase{"la_wrfsbase", "WRFSBASE", "f3480faed0"}),
    [](const ::testing::TestParamInfo<PrivilegedCase>& info) {
      return std::string(info.param.plugin);
    });

// The hidden WRPKRU sits inside `movl $0xef010f, %eax` (b8 0f 01 ef 00):
// the reported offset is one past the opcode byte.
TEST(LoaderAttackTest, HiddenWrpkruIsReportedInsideTheImmediate) {
  const std::string path = Plugin("la_wrpkru_hidden");
  const std::vector<uint8_t> file = ReadBytes(path);
  auto box = MakeBox({.name = "hidden"});
  absl::Status s = box->Load(path);
  ASSERT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  const int64_t offset = OffsetInMessage(s.message());
  ASSERT_GT(offset, 0);
  EXPECT_EQ(file[offset - 1], Hex("b8")[0]) << "not inside a mov imm32";
}

TEST(LoaderAttackTest, ScanExitCodes) {
  const std::string libz = "/usr/lib/x86_64-linux-gnu/libz.so.1";
  ScanRun clean = RunScan({libz});
  EXPECT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_THAT(clean.output, HasSubstr(libz + ": clean"));
  ScanRun plugin = RunScan({Plugin("la_data")});
  EXPECT_EQ(plugin.exit_code, 0) << plugin.output;

  TempDir dir;
  const std::string text = dir.File("not_elf.so");
  const std::string note = "this is not an ELF file\n";
  WriteBytes(text, std::vector<uint8_t>(note.begin(), note.end()));
  ScanRun not_elf = RunScan({text});
  EXPECT_EQ(not_elf.exit_code, 2) << not_elf.output;
  EXPECT_THAT(not_elf.output, HasSubstr(text));
  ScanRun missing = RunScan({dir.File("missing.so")});
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  ScanRun none = RunScan({});
  EXPECT_EQ(none.exit_code, 2) << none.output;

  // Several files: findings win over clean files, errors over both.
  ScanRun mixed = RunScan({libz, Plugin("la_wrpkru")});
  EXPECT_EQ(mixed.exit_code, 1) << mixed.output;
  ScanRun worst = RunScan({Plugin("la_wrpkru"), text, libz});
  EXPECT_EQ(worst.exit_code, 2) << worst.output;
  EXPECT_EQ(ParseScan(worst.output, Plugin("la_wrpkru")).size(), 1u);
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(LoaderAttackTest, ScanExitCodes);

// Found at a0e9148, fixed since (scanner, runtime/loader/code_scan.cc FindPrivilegedInstructions):
// WRFSBASE is only recognized when F3 is immediately before 0F or before a
// REX prefix that is immediately before 0F. Legacy prefixes may come in any
// order and the CPU still decodes F3 as the mandatory prefix:
// f3 2e 48 0f ae d0 ("cs wrfsbase %rax") runs as WRFSBASE on this machine
// (checked in a plain process: the FS base reads back as the written value).
// la_wrfsbase_prefixed.so therefore loads, mpkbox-scan calls it clean, and
// compartment code moves the thread pointer that the gate's LOAD_THREAD
// (trampolines/pkru.inc) reads its ThreadBlock through after switching back to
// host rights. The same holds for WRGSBASE and any legacy prefix
// (26/2e/36/3e/64/65/66/67/f2/f3) between F3 and REX/0F.
TEST(LoaderAttackTest, WrfsbaseWithSegmentPrefixIsFound) {
  const std::string path = Plugin("la_wrfsbase_prefixed");
  const ScanRun scan = RunScan({path});
  EXPECT_EQ(scan.exit_code, 1) << scan.output;
  auto box = MakeBox({.name = "fsbase"});
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  if (s.ok()) {
    auto probe = box->Lookup<uint64_t(uint64_t)>("la_fs_probe");
    ASSERT_TRUE(probe.ok());
    const uint64_t forged = 0x123456789000ull;
    // The compartment sets FS to `forged`, reads it back and restores it.
    absl::StatusOr<Tainted<uint64_t>> seen = box->Call(*probe, forged);
    ASSERT_TRUE(seen.ok()) << seen.status();
    EXPECT_NE(Value(seen), forged)
        << "WRFSBASE ran inside the compartment: FS base was 0x" << std::hex
        << forged;
  }
  ExpectProcessWorks();
}

// Found at a0e9148 (runtime/loader/elf_loader.cc ElfLoader::Map): the scan
// covered only [p_offset, p_offset + p_filesz) of an executable PT_LOAD, but
// the mmap mapped whole pages of the file executable, so a WRPKRU just past
// p_filesz ran. Here the text segment of la_tail.so is cut right before
// la_tail_attack's WRPKRU. Now the loader copies exactly the scanned bytes
// (the rest of the page is zeros): the file is refused (its constructor now
// lies outside the cut segment) or, were it loaded, has no WRPKRU to run.
TEST(LoaderAttackTest, BytesPastExecutableFileszNeverRun) {
  ElfBytes elf(ReadBytes(Plugin("la_tail")));
  Elf64_Phdr* text = elf.ExecLoad();
  ASSERT_NE(text, nullptr);
  const std::vector<size_t> hits = Find(elf.bytes(), Hex("0f01ef"));
  ASSERT_EQ(hits.size(), 1u);
  ASSERT_GT(hits[0], text->p_offset);
  text->p_filesz = text->p_memsz = hits[0] - text->p_offset;
  TempDir dir;
  const std::string path = dir.File("la_tail_cut.so");
  WriteBytes(path, elf.bytes());

  const ScanRun scan = RunScan({path});
  auto box = MakeBox({.name = "tail"});
  absl::Status s = box->Load(path);
  g_host_word = kHostWordValue;
  if (s.ok()) {
    auto attack = box->Lookup<void(volatile uint64_t*)>("la_tail_attack");
    ASSERT_TRUE(attack.ok());
    absl::Status call = box->Call(*attack, &g_host_word);
    EXPECT_FALSE(call.ok()) << "the compartment ran WRPKRU";
  }
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  ExpectProcessWorks();
}

// Finds la_patch_attack's 8-byte placeholder (after its three xors) in the
// file.
size_t PlaceholderOffset(ElfBytes& elf) {
  const std::vector<size_t> hits =
      Find(elf.bytes(), Hex("31c031c931d29090909090909090"));
  EXPECT_EQ(hits.size(), 1u);
  return hits.empty() ? 0 : hits[0] + 6;
}

// Control: la_patch.so as built loads, and its attack function faults on the
// host global (the placeholder is eight NOPs).
TEST(LoaderAttackTest, PatchPluginControlFaults) {
  auto box = MakeBox({.name = "patch-control"});
  ASSERT_TRUE(box->Load(Plugin("la_patch")).ok());
  auto attack = box->Lookup<void(volatile uint64_t*)>("la_patch_attack");
  ASSERT_TRUE(attack.ok());
  absl::Status s = box->Call(*attack, &g_host_word);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(g_host_word, kHostWordValue);
  ExpectCompartmentWorks(box.get());
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc ElfLoader::Relocate): a relocation
// may write anywhere inside the image, executable segment included, because
// every segment is mapped writable until Protect and r_offset is only
// checked against the span. The scan ran on the file bytes before that, so
// relocated bytes are never scanned: a GLOB_DAT of an SHN_ABS symbol writes
// eight attacker-chosen bytes. Here the GLOB_DAT of __gmon_start__ is
// pointed at la_patch_attack's placeholder and at la_abs_code, whose value
// encodes WRPKRU followed by NOPs. No DT_TEXTREL/DF_TEXTREL is needed. (The
// same unchecked writes can rewrite DT_GNU_HASH or the symbol table after
// Map validated them: RelocationCannotRewriteValidatedHashTable.)
TEST(LoaderAttackTest, RelocationCannotWriteWrpkruIntoCode) {
  ElfBytes elf(ReadBytes(Plugin("la_patch")));
  const size_t site = PlaceholderOffset(elf);
  ASSERT_NE(site, 0u);
  const uint32_t abs_sym = elf.DynSym("la_abs_code");
  const uint32_t gmon = elf.DynSym("__gmon_start__");
  ASSERT_NE(abs_sym, 0u);
  ASSERT_NE(gmon, 0u);
  ASSERT_EQ(elf.Sym(abs_sym)->st_shndx, SHN_ABS);
  Elf64_Rela* victim = nullptr;
  for (size_t i = 0; i < elf.RelaCount(); ++i) {
    Elf64_Rela* r = elf.Rela(i);
    if (ELF64_R_TYPE(r->r_info) == R_X86_64_GLOB_DAT &&
        ELF64_R_SYM(r->r_info) == gmon) {
      victim = r;
    }
  }
  ASSERT_NE(victim, nullptr);
  victim->r_offset = elf.VaddrOfOffset(site);
  victim->r_info = ELF64_R_INFO(abs_sym, R_X86_64_GLOB_DAT);
  TempDir dir;
  const std::string path = dir.File("la_patch_reloc.so");
  WriteBytes(path, elf.bytes());
  EXPECT_EQ(RunScan({path}).exit_code, 0) << "the file itself is clean";

  auto box = MakeBox({.name = "reloc-code"});
  absl::Status s = box->Load(path);
  EXPECT_FALSE(s.ok()) << "a relocation into the executable segment loaded";
  g_host_word = kHostWordValue;
  if (s.ok()) {
    auto attack = box->Lookup<void(volatile uint64_t*)>("la_patch_attack");
    ASSERT_TRUE(attack.ok());
    absl::Status call = box->Call(*attack, &g_host_word);
    EXPECT_FALSE(call.ok()) << "the compartment ran WRPKRU";
  }
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  ExpectProcessWorks();
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc ElfLoader::Map): the scan reads the
// file into memory, but the segments are then mmap'ed from the file by path
// (a second open) with MAP_PRIVATE. Executable pages are never written, so
// they stay the page cache's: whoever can write the plugin file (the party
// that supplied it) changes the compartment's code after the scan, here by
// writing WRPKRU into la_patch_attack's placeholder after Load returned OK.
// (The window between ReadFile and the second open is the same bug with a
// rename.) Mapping the scanned bytes (an anonymous copy or a sealed memfd)
// would close both.
TEST(LoaderAttackTest, FileRewrittenAfterScanDoesNotChangeMappedCode) {
  ElfBytes elf(ReadBytes(Plugin("la_patch")));
  const size_t site = PlaceholderOffset(elf);
  ASSERT_NE(site, 0u);
  TempDir dir;
  const std::string path = dir.File("la_patch_copy.so");
  WriteBytes(path, elf.bytes());

  auto box = MakeBox({.name = "rewrite"});
  ASSERT_TRUE(box->Load(path).ok());
  auto attack = box->Lookup<void(volatile uint64_t*)>("la_patch_attack");
  ASSERT_TRUE(attack.ok());
  // In place, as a writer of the file would.
  const int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::vector<uint8_t> wrpkru = Hex("0f01ef");
  ASSERT_EQ(pwrite(fd, wrpkru.data(), wrpkru.size(), site), 3);
  close(fd);
  g_host_word = kHostWordValue;
  absl::Status call = box->Call(*attack, &g_host_word);
  EXPECT_EQ(call.code(), absl::StatusCode::kAborted)
      << call << ": the compartment ran code that was never scanned";
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  ExpectProcessWorks();
}

// ---------------------------------------------------- 3. refused features

TEST(LoaderAttackTest, ThreadLocalStorageIsRefused) {
  auto box = MakeBox({.name = "tls"});
  const std::string path = Plugin("la_tls");
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("thread-local storage"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_EQ(box->Lookup<int()>("la_tls_next").status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

TEST(LoaderAttackTest, IfuncIsRefused) {
  auto box = MakeBox({.name = "ifunc"});
  const std::string path = Plugin("la_ifunc");
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("IFUNC"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_THAT(std::string(s.message()), HasSubstr(RealPath(path)));
  EXPECT_EQ(box->Lookup<int(int)>("la_ifunc_caller").status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc; contract in elf_loader.h: "Refused
// with an error naming the feature: ... IFUNC (definitions or
// R_X86_64_IRELATIVE)"): an exported STT_GNU_IFUNC that nothing inside the
// object refers to is never looked at, so the object loads; only a
// relocation that resolves to it is refused. (Lookup then skips the IFUNC,
// so it is not callable; the breach is of the stated contract.)
TEST(LoaderAttackTest, IfuncDefinitionAloneIsRefused) {
  auto box = MakeBox({.name = "ifunc-only"});
  absl::Status s = box->Load(Plugin("la_ifunc_only"));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("IFUNC"));
  EXPECT_EQ(box->Lookup<int(int)>("la_ifunc_only").status().code(),
            absl::StatusCode::kNotFound);
}

// ------------------------------------------ 4. refused imports at call time

// Found at a0e9148, fixed since (runtime/loader/import_policy.cc BindHostImport): after the
// allowlists, every name is looked up with Find(p.libm, ...), meant for
// libm's arithmetic. But dlsym/dlvsym on a library handle search that
// library's whole dependency scope, and libm.so.6 needs libc.so.6: every
// libc symbol (fopen, stderr, pthread_create, signal, sigaction, printf,
// ...) is found there and bound directly, so the refused-import trap is
// only reached for symbols outside libm's scope (e.g. ones in the host
// executable). The refused functions then run with compartment rights;
// what stops them is the key-0 write fault or the syscall filter, so calls
// end with kAborted or with a syscall's kPermissionDenied, never naming the
// import. (It also bypasses mpkbox's own interposers: signal/sigaction bind
// to glibc's, not the process's.) The tests below check the documented
// behaviour and fail on it.
TEST(LoaderAttackTest, RefusedImportsAreNotBoundToLibc) {
  auto box = MakeBox({.name = "bindings"});
  ASSERT_TRUE(box->Load(Plugin("la_imports")).ok());
  auto address = box->Lookup<void*(int)>("la_import_address");
  ASSERT_TRUE(address.ok());
  const char* names[] = {"fopen", "stderr", "pthread_create", "signal",
                         "sigaction"};
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(names[i]);
    void* bound = Value(box->Call(*address, i));
    Dl_info info{};
    const bool known = dladdr(bound, &info) != 0 && info.dli_fname != nullptr;
    EXPECT_FALSE(known && strstr(info.dli_fname, "libc.so") != nullptr)
        << names[i] << " is bound to " << bound << " in " << info.dli_fname
        << " (" << (info.dli_sname != nullptr ? info.dli_sname : "?") << ")";
  }
}

class RefusedImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    box_ = MakeBox({.name = "imports"});
    ASSERT_NE(box_, nullptr);
    absl::Status s = box_->Load(Plugin("la_imports"));
    ASSERT_TRUE(s.ok()) << s;
  }
  // A refused import ends the call with kPermissionDenied naming it.
  void ExpectRefused(const absl::Status& s, const std::string& symbol) {
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box_)));
    EXPECT_THAT(std::string(s.message()), HasSubstr("'" + symbol + "'"));
  }
  void ExpectStillWorks() {
    absl::Status reset = box_->Reset();
    ASSERT_TRUE(reset.ok()) << reset;
    auto ok = box_->Lookup<int(int)>("la_ok");
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(Value(box_->Call(*ok, 5)), 11);
  }
  std::unique_ptr<Compartment> box_;
};

TEST_F(RefusedImportTest, Fopen) {
  TempDir dir;
  const std::string out = dir.File("fopen.txt");
  auto fn = box_->Lookup<int(const char*)>("la_call_fopen");
  ASSERT_TRUE(fn.ok());
  absl::StatusOr<void*> arg = box_->Allocate(out.size() + 1);
  ASSERT_TRUE(arg.ok());
  memcpy(*arg, out.c_str(), out.size() + 1);
  auto r = box_->Call(*fn, static_cast<const char*>(*arg));
  ExpectRefused(r.status(), "fopen");
  EXPECT_FALSE(FileExists(out));
  ExpectStillWorks();
}

TEST_F(RefusedImportTest, Stderr) {
  auto fn = box_->Lookup<int()>("la_read_stderr");
  ASSERT_TRUE(fn.ok());
  auto r = box_->Call(*fn);
  ExpectRefused(r.status(), "stderr");
  // The host's stderr still works.
  EXPECT_GT(fprintf(stderr, "[host stderr still works]\n"), 0);
  EXPECT_EQ(fflush(stderr), 0);
  ExpectStillWorks();
}

int CountThreads() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

TEST_F(RefusedImportTest, PthreadCreate) {
  auto fn = box_->Lookup<int()>("la_call_pthread_create");
  ASSERT_TRUE(fn.ok());
  const int threads = CountThreads();
  auto r = box_->Call(*fn);
  ExpectRefused(r.status(), "pthread_create");
  EXPECT_EQ(CountThreads(), threads);
  ExpectStillWorks();
}

struct sigaction Disposition(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sigaction(sig, nullptr, &sa);
  return sa;
}

TEST_F(RefusedImportTest, Signal) {
  auto fn = box_->Lookup<long()>("la_call_signal");
  ASSERT_TRUE(fn.ok());
  const struct sigaction before = Disposition(SIGUSR1);
  auto r = box_->Call(*fn);
  ExpectRefused(r.status(), "signal");
  EXPECT_EQ(Disposition(SIGUSR1).sa_handler, before.sa_handler);
  ExpectStillWorks();
}

TEST_F(RefusedImportTest, Sigaction) {
  auto fn = box_->Lookup<int()>("la_call_sigaction");
  ASSERT_TRUE(fn.ok());
  const struct sigaction before = Disposition(SIGUSR2);
  auto r = box_->Call(*fn);
  ExpectRefused(r.status(), "sigaction");
  EXPECT_EQ(Disposition(SIGUSR2).sa_handler, before.sa_handler);
  ExpectStillWorks();
}

// ------------------------------------------------- 5. exposed host functions

int g_host_log_calls = 0;
int g_host_log_a = 0, g_host_log_b = 0;
uint32_t g_host_log_pkru = 0xffffffff;
uint64_t* g_host_log_heap = nullptr;  // trusted key: compartments cannot

int HostLog(int a, int b) {
  ++g_host_log_calls;
  g_host_log_a = a;
  g_host_log_b = b;
  g_host_log_pkru = internal::ReadPkru();
  *g_host_log_heap += 1;  // host rights: the host heap is writable
  return a * b;
}

TEST(LoaderAttackTest, ExposedHostFunctionRunsWithHostRights) {
  g_host_log_heap = new uint64_t(100);
  auto box = MakeBox({.name = "exposed"});
  ASSERT_TRUE(box->Expose("host_log", &HostLog).ok());
  absl::Status s = box->Load(Plugin("la_host"));
  ASSERT_TRUE(s.ok()) << s;
  auto use = box->Lookup<int(int, int)>("la_use_host");
  ASSERT_TRUE(use.ok());
  EXPECT_EQ(Value(box->Call(*use, 6, 7)), 43);
  EXPECT_EQ(g_host_log_calls, 1);
  EXPECT_EQ(g_host_log_a, 6);
  EXPECT_EQ(g_host_log_b, 7);
  EXPECT_EQ(g_host_log_pkru, 0u)
      << "the host function ran with PKRU 0x" << std::hex << g_host_log_pkru;
  EXPECT_EQ(*g_host_log_heap, 101u);
  // Exposed bindings survive Reset (the object is reloaded and rebound).
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(*use, 2, 3)), 7);
  EXPECT_EQ(g_host_log_calls, 2);
  EXPECT_EQ(*g_host_log_heap, 102u);
  delete g_host_log_heap;
  g_host_log_heap = nullptr;
}

// Without Expose, host_log is not bound: the load fails naming it.
TEST(LoaderAttackTest, UnexposedHostLogFailsLoad) {
  const int calls_before = g_host_log_calls;
  auto box = MakeBox({.name = "unexposed-log"});
  absl::Status s = box->Load(Plugin("la_host"));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("'host_log"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_EQ(g_host_log_calls, calls_before);
  ExpectCompartmentWorks(box.get());
}

// mpkbox_not_exposed is defined (and visible to dlsym) in this binary but
// not exposed: the loader binds a refused-import trap (or refuses the
// load); either way the host function never runs with compartment rights.
TEST(LoaderAttackTest, HostSymbolNotExposedNeverRuns) {
  auto box = MakeBox({.name = "not-exposed"});
  absl::Status s = box->Load(Plugin("la_not_exposed"));
  if (s.ok()) {
    auto fn = box->Lookup<int()>("la_call_not_exposed");
    ASSERT_TRUE(fn.ok());
    s = box->Call(*fn).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  }
  EXPECT_THAT(std::string(s.message()), HasSubstr("'mpkbox_not_exposed'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  EXPECT_EQ(mpkbox_not_exposed_ran, 0);
  ExpectCompartmentWorks(box.get());
  EXPECT_EQ(mpkbox_not_exposed_ran, 0);
}

// ---------------------------------------------- 6. isolation of loaded data

int ReadInt(const int* p) { return *p; }
const char* ReadPointer(const char* const* p) { return *p; }

TEST(LoaderAttackTest, PluginDataIsOnTheCompartmentsKey) {
  auto box = MakeBox({.name = "data"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto address = box->Lookup<int*()>("la_counter_address");
  auto bump = box->Lookup<int()>("la_bump_counter");
  auto counter = box->Lookup<int>("la_counter");
  ASSERT_TRUE(address.ok() && bump.ok() && counter.ok());
  int* p = Value(box->Call(*address));
  EXPECT_EQ(p, *counter);
  EXPECT_EQ(PkeyOf(reinterpret_cast<uintptr_t>(p)), box->pkey());
  EXPECT_TRUE(box->Contains(p, sizeof(int)));
  EXPECT_EQ(*p, 41);
  EXPECT_EQ(Value(box->Call(*bump)), 42);  // writable from inside
  EXPECT_EQ(*p, 42);
  // Code, read-only data and .bss too.
  EXPECT_EQ(PkeyOf(reinterpret_cast<uintptr_t>(*bump)), box->pkey());
  auto runs = box->Lookup<int>("la_ctor_runs");
  ASSERT_TRUE(runs.ok());
  EXPECT_EQ(PkeyOf(reinterpret_cast<uintptr_t>(*runs)), box->pkey());
  EXPECT_EQ(**runs, 1);
}

TEST(LoaderAttackTest, RelroIsReadOnlyInside) {
  auto box = MakeBox({.name = "relro"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto table = box->Lookup<const char* const*()>("la_table_address");
  auto write = box->Lookup<void()>("la_write_table");
  auto len = box->Lookup<size_t(int)>("la_table_len");
  ASSERT_TRUE(table.ok() && write.ok() && len.ok());
  const char* const* t = Value(box->Call(*table));
  EXPECT_STREQ(t[0], "alpha");  // relocated
  EXPECT_EQ(PkeyOf(reinterpret_cast<uintptr_t>(t)), box->pkey());
  EXPECT_EQ(Value(box->Call(*len, 2)), 5u);
  absl::Status s = box->Call(*write);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  const FaultReport* f = box->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->signal, SIGSEGV);
  EXPECT_EQ(f->code, SEGV_ACCERR) << f->what;  // its own key, read-only page
  EXPECT_EQ(f->address, reinterpret_cast<uintptr_t>(t));
  EXPECT_STREQ(t[0], "alpha");
  ASSERT_TRUE(box->Reset().ok());
  t = Value(box->Call(*table));
  EXPECT_STREQ(t[0], "alpha");
  EXPECT_EQ(Value(box->Call(*len, 0)), 5u);
}

TEST(LoaderAttackTest, AnotherCompartmentCannotReadPluginData) {
  auto a = MakeBox({.name = "owner"});
  auto b = MakeBox({.name = "snoop"});
  ASSERT_TRUE(a->Load(Plugin("la_data")).ok());
  auto counter = a->Lookup<int>("la_counter");
  auto table = a->Lookup<const char* const*()>("la_table_address");
  ASSERT_TRUE(counter.ok() && table.ok());
  absl::Status s =
      b->Call(&ReadInt, static_cast<const int*>(*counter)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("'snoop'"));
  ASSERT_NE(b->last_fault(), nullptr);
  EXPECT_EQ(b->last_fault()->code, SEGV_PKUERR);
  EXPECT_EQ(b->last_fault()->pkey, a->pkey());
  ASSERT_TRUE(b->Reset().ok());
  // The read-only RELRO data too.
  const char* const* t = Value(a->Call(*table));
  s = b->Call(&ReadPointer, t).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  ASSERT_NE(b->last_fault(), nullptr);
  EXPECT_EQ(b->last_fault()->pkey, a->pkey());
  // b loading the same plugin gets its own copy.
  ASSERT_TRUE(b->Reset().ok());
  ASSERT_TRUE(b->Load(Plugin("la_data")).ok());
  auto b_counter = b->Lookup<int>("la_counter");
  ASSERT_TRUE(b_counter.ok());
  EXPECT_NE(*b_counter, *counter);
  EXPECT_EQ(Value(b->Call(&ReadInt, static_cast<const int*>(*b_counter))), 41);
  EXPECT_EQ(Value(a->Call(&ReadInt, static_cast<const int*>(*counter))), 41);
}

TEST(LoaderAttackTest, LibzInACompartmentIsItsOwnInstance) {
  auto box = MakeBox({.name = "zlib-copy"});
  ASSERT_TRUE(box->Load("libz.so.1").ok());
  auto version = box->Lookup<decltype(::zlibVersion)>("zlibVersion");
  auto crc = box->Lookup<decltype(::crc32)>("crc32");
  ASSERT_TRUE(version.ok() && crc.ok());
  EXPECT_NE(reinterpret_cast<void*>(*version),
            reinterpret_cast<void*>(&::zlibVersion));
  EXPECT_EQ(PkeyOf(reinterpret_cast<uintptr_t>(*version)), box->pkey());
  EXPECT_NE(PkeyOf(reinterpret_cast<uintptr_t>(&::zlibVersion)), box->pkey());
  // Its string is its own copy, in its own image.
  const char* inside = Value(box->Call(*version));
  EXPECT_STREQ(inside, ::zlibVersion());
  EXPECT_NE(inside, ::zlibVersion());
  EXPECT_TRUE(box->Contains(inside, 1));
  auto* data = static_cast<Bytef*>(*box->Allocate(5));
  memcpy(data, "mpkbx", 5);
  EXPECT_EQ(Value(box->Call(*crc, uLong{0}, static_cast<const Bytef*>(data),
                            uInt{5})),
            ::crc32(0, reinterpret_cast<const Bytef*>("mpkbx"), 5));
}

std::string Backtrace(const FaultReport* f) {
  std::string all;
  if (f == nullptr) return all;
  for (const std::string& frame : f->backtrace) all += frame + "\n";
  return all;
}

// A fault report names the function of the object loaded now, also where
// another compartment had another object at the same address before.
// Found at a0e9148, fixed since (runtime/fault_report.cc Symbolized, through absl::Symbolize): the
// symbolizer caches what it learnt about the mappings; when a compartment
// slot is reused, the new image lands at the old image's address and the
// frame is looked up in the previous object's file ("la_data.so: unable to
// find LOAD segment for pc"), so the report shows "?" (or, with a larger
// old object, a wrong name). Alone, the same fault names la_call_sigaction.
// Diagnostics only: the status and the containment are right.
TEST(LoaderAttackTest, FaultBacktraceNamesTheCurrentObject) {
  uintptr_t first_base = 0;
  {
    auto a = MakeBox({.name = "first-tenant"});
    ASSERT_TRUE(a->Load(Plugin("la_data")).ok());
    auto write = a->Lookup<void()>("la_write_table");
    ASSERT_TRUE(write.ok());
    first_base = reinterpret_cast<uintptr_t>(*write) & ~uintptr_t{0xfff};
    EXPECT_EQ(a->Call(*write).code(), absl::StatusCode::kAborted);
    EXPECT_THAT(Backtrace(a->last_fault()), HasSubstr("la_write_table"));
  }
  auto b = MakeBox({.name = "second-tenant"});
  ASSERT_TRUE(b->Load(Plugin("la_imports")).ok());
  auto call = b->Lookup<int()>("la_call_sigaction");
  ASSERT_TRUE(call.ok());
  std::cerr << "  first image page 0x" << std::hex << first_base
            << ", second 0x" << (reinterpret_cast<uintptr_t>(*call) & ~0xfffull)
            << std::dec << "\n";
  EXPECT_FALSE(b->Call(*call).ok());
  EXPECT_THAT(Backtrace(b->last_fault()), HasSubstr("la_call_sigaction"));
}

// ------------------------------------------------------ 7. malformed files

using Mutation = std::function<void(ElfBytes&)>;

struct MalformedCase {
  std::string name;
  const char* plugin;  // the base
  Mutation mutate;
};

std::vector<MalformedCase> MalformedCases() {
  std::vector<MalformedCase> cases;
  auto add = [&cases](std::string name, Mutation m,
                      const char* plugin = "la_data") {
    cases.push_back({std::move(name), plugin, std::move(m)});
  };
  auto truncate = [](size_t n) {
    return
        [n](ElfBytes& e) { e.bytes().resize(std::min(n, e.bytes().size())); };
  };
  // Truncated.
  add("empty", truncate(0));
  add("truncated-16", truncate(16));
  add("truncated-ehdr", truncate(sizeof(Elf64_Ehdr) - 1));
  add("only-ehdr", truncate(sizeof(Elf64_Ehdr)));
  add("truncated-phdrs",
      truncate(sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr) + 7));
  add("truncated-in-text",
      [](ElfBytes& e) { e.bytes().resize(e.ExecLoad()->p_offset + 16); });
  add("truncated-last-load-byte",
      [](ElfBytes& e) { e.bytes().resize(e.LoadedFileEnd() - 1); });
  // Not ELF, or not this kind.
  add("not-elf", [](ElfBytes& e) {
    const std::string text = "#!/bin/sh\necho this is not a shared object\n";
    e.bytes().assign(text.begin(), text.end());
  });
  add("elf-32-bit",
      [](ElfBytes& e) { e.eh()->e_ident[EI_CLASS] = ELFCLASS32; });
  add("elf-i386", [](ElfBytes& e) { e.eh()->e_machine = EM_386; });
  add("bad-magic", [](ElfBytes& e) { e.eh()->e_ident[1] = 'X'; });
  add("executable-type", [](ElfBytes& e) { e.eh()->e_type = ET_EXEC; });
  add("pt-interp", [](ElfBytes& e) { e.Phdr(PT_NOTE)->p_type = PT_INTERP; });
  // Program headers.
  add("phoff-beyond-file",
      [](ElfBytes& e) { e.eh()->e_phoff = e.bytes().size() + 64; });
  add("phoff-huge", [](ElfBytes& e) { e.eh()->e_phoff = ~0ull - 8; });
  add("phnum-huge", [](ElfBytes& e) { e.eh()->e_phnum = 0xffff; });
  add("phentsize-wrong", [](ElfBytes& e) { e.eh()->e_phentsize = 32; });
  add("phnum-zero", [](ElfBytes& e) { e.eh()->e_phnum = 0; });
  add("no-pt-dynamic",
      [](ElfBytes& e) { e.Phdr(PT_DYNAMIC)->p_type = PT_NULL; });
  add("p-offset-beyond-file", [](ElfBytes& e) {
    e.ExecLoad()->p_offset += 0x1000000;  // congruent with p_vaddr still
  });
  add("p-filesz-beyond-file",
      [](ElfBytes& e) { e.ExecLoad()->p_filesz = e.bytes().size() * 4; });
  add("p-filesz-wraps", [](ElfBytes& e) {
    e.ExecLoad()->p_filesz = ~0ull - e.ExecLoad()->p_offset + 2;
  });
  add("p-memsz-huge",
      [](ElfBytes& e) { e.Phdr(PT_LOAD, 3)->p_memsz = uint64_t{1} << 40; });
  add("p-memsz-wraps",
      [](ElfBytes& e) { e.Phdr(PT_LOAD, 3)->p_memsz = ~0ull - 0xfff; });
  add("p-vaddr-huge",
      [](ElfBytes& e) { e.Phdr(PT_LOAD, 3)->p_vaddr += 0x7ff000000000ull; });
  add("p-vaddr-not-congruent",
      [](ElfBytes& e) { e.Phdr(PT_LOAD, 3)->p_vaddr += 8; });
  add("filesz-above-memsz", [](ElfBytes& e) {
    Elf64_Phdr* p = e.Phdr(PT_LOAD, 3);
    p->p_memsz = p->p_filesz - 8;
  });
  add("pt-dynamic-outside",
      [](ElfBytes& e) { e.Phdr(PT_DYNAMIC)->p_vaddr = 0x7fff00000000ull; });
  add("pt-dynamic-memsz-huge",
      [](ElfBytes& e) { e.Phdr(PT_DYNAMIC)->p_memsz = ~0ull / 2; });
  // Dynamic section pointers.
  add("dt-symtab-outside",
      [](ElfBytes& e) { e.Dyn(DT_SYMTAB)->d_un.d_ptr = 0x7fff00000000ull; });
  add("dt-symtab-minus-one",
      [](ElfBytes& e) { e.Dyn(DT_SYMTAB)->d_un.d_ptr = ~0ull; });
  add("dt-strtab-outside",
      [](ElfBytes& e) { e.Dyn(DT_STRTAB)->d_un.d_ptr = 0x7fff00000000ull; });
  add("dt-strsz-huge",
      [](ElfBytes& e) { e.Dyn(DT_STRSZ)->d_un.d_val = uint64_t{1} << 40; });
  add("dt-syment-wrong",
      [](ElfBytes& e) { e.Dyn(DT_SYMENT)->d_un.d_val = 16; });
  add("dt-gnu-hash-outside",
      [](ElfBytes& e) { e.Dyn(DT_GNU_HASH)->d_un.d_ptr = 0x7fff00000000ull; });
  add("gnu-hash-nbuckets-huge", [](ElfBytes& e) {
    e.At<uint32_t>(e.Dyn(DT_GNU_HASH)->d_un.d_ptr)[0] = 0x40000000;
  });
  add("gnu-hash-bloom-huge", [](ElfBytes& e) {
    e.At<uint32_t>(e.Dyn(DT_GNU_HASH)->d_un.d_ptr)[2] = 0x40000000;
  });
  add("dt-rela-outside",
      [](ElfBytes& e) { e.Dyn(DT_RELA)->d_un.d_ptr = 0x7fff00000000ull; });
  add("dt-relasz-huge",
      [](ElfBytes& e) { e.Dyn(DT_RELASZ)->d_un.d_val = uint64_t{1} << 40; });
  add("dt-jmprel-outside",
      [](ElfBytes& e) { e.Dyn(DT_JMPREL)->d_un.d_ptr = 0x7fff00000000ull; });
  add("dt-init-array-outside", [](ElfBytes& e) {
    e.Dyn(DT_INIT_ARRAY)->d_un.d_ptr = 0x7fff00000000ull;
  });
  add("dt-init-arraysz-huge", [](ElfBytes& e) {
    e.Dyn(DT_INIT_ARRAYSZ)->d_un.d_val = uint64_t{1} << 40;
  });
  add("dt-init-outside",
      [](ElfBytes& e) { e.Dyn(DT_INIT)->d_un.d_ptr = 0x7fff00000000ull; });
  add("dt-versym-outside",
      [](ElfBytes& e) { e.Dyn(DT_VERSYM)->d_un.d_ptr = 0x7fff00000000ull; });
  add("dt-needed-missing-library", [](ElfBytes& e) {
    // Any string of the table that names no library: "la_counter".
    Elf64_Dyn* strtab = e.Dyn(DT_STRTAB);
    const char* str = e.At<const char>(strtab->d_un.d_ptr);
    const size_t size = e.Dyn(DT_STRSZ)->d_un.d_val;
    size_t off = 0;
    while (off < size && strcmp(str + off, "la_counter") != 0) {
      off += strlen(str + off) + 1;
    }
    ASSERT_LT(off, size);
    e.Dyn(DT_NEEDED)->d_un.d_val = off;
  });
  add("dt-needed-empty-name", [](ElfBytes& e) {
    e.Dyn(DT_NEEDED)->d_un.d_val = e.Dyn(DT_STRSZ)->d_un.d_val + 100;
  });
  add("dt-rel", [](ElfBytes& e) { e.Dyn(DT_RELAENT)->d_tag = DT_REL; });
  add("dt-textrel", [](ElfBytes& e) { e.Dyn(DT_RELAENT)->d_tag = DT_TEXTREL; });
  // Relocations.
  add("r-offset-outside", [](ElfBytes& e) {
    e.FirstRela(R_X86_64_RELATIVE)->r_offset = 0x7fff00000000ull;
  });
  add("r-offset-minus-one",
      [](ElfBytes& e) { e.FirstRela(R_X86_64_RELATIVE)->r_offset = ~0ull; });
  add("r-offset-straddles-end", [](ElfBytes& e) {
    Elf64_Phdr* last = e.Phdr(PT_LOAD, 3);
    const uint64_t end = (last->p_vaddr + last->p_memsz + 0xfff) & ~0xfffull;
    e.FirstRela(R_X86_64_RELATIVE)->r_offset = end - 4;
  });
  add("plt-r-offset-outside", [](ElfBytes& e) {
    e.Rela(0, /*plt=*/true)->r_offset = 0x7fff00000000ull;
  });
  add("symbol-index-beyond-table", [](ElfBytes& e) {
    Elf64_Rela* r = e.FirstRela(R_X86_64_GLOB_DAT);
    r->r_info = ELF64_R_INFO(0xffffff, R_X86_64_GLOB_DAT);
  });
  add("plt-symbol-index-beyond-table", [](ElfBytes& e) {
    Elf64_Rela* r = e.Rela(0, /*plt=*/true);
    r->r_info = ELF64_R_INFO(100000, R_X86_64_JUMP_SLOT);
  });
  add("relocation-type-unknown", [](ElfBytes& e) {
    Elf64_Rela* r = e.FirstRela(R_X86_64_RELATIVE);
    r->r_info = ELF64_R_INFO(0, 200);
  });
  add("relocation-copy", [](ElfBytes& e) {
    Elf64_Rela* r = e.FirstRela(R_X86_64_GLOB_DAT);
    r->r_info = ELF64_R_INFO(ELF64_R_SYM(r->r_info), R_X86_64_COPY);
  });
  add("relocation-irelative", [](ElfBytes& e) {
    Elf64_Rela* r = e.FirstRela(R_X86_64_RELATIVE);
    r->r_info = ELF64_R_INFO(0, R_X86_64_IRELATIVE);
  });
  add("relocation-tpoff", [](ElfBytes& e) {
    Elf64_Rela* r = e.FirstRela(R_X86_64_RELATIVE);
    r->r_info = ELF64_R_INFO(0, R_X86_64_TPOFF64);
  });
  add("symbol-value-outside", [](ElfBytes& e) {
    // strlen is the one import; la_ok is defined. A relocation naming a
    // defined symbol whose value lies outside: point the GLOB_DAT at la_ok
    // and move la_ok far away.
    const uint32_t la_ok = e.DynSym("la_ok");
    ASSERT_NE(la_ok, 0u);
    e.Sym(la_ok)->st_value = 0x7fff00000000ull;
    Elf64_Rela* r = e.FirstRela(R_X86_64_GLOB_DAT);
    r->r_info = ELF64_R_INFO(la_ok, R_X86_64_GLOB_DAT);
  });
  add("constructor-outside", [](ElfBytes& e) {
    // .init_array's entries are RELATIVE relocations: move the first one's
    // addend out of the image.
    const uint64_t init_array = e.Dyn(DT_INIT_ARRAY)->d_un.d_ptr;
    for (size_t i = 0; i < e.RelaCount(); ++i) {
      if (e.Rela(i)->r_offset == init_array) {
        e.Rela(i)->r_addend = 0x7fff00000000ll;
      }
    }
  });
  add("constructor-in-data", [](ElfBytes& e) {
    // A constructor that is inside the image but not executable: it runs
    // inside and faults.
    const uint64_t init_array = e.Dyn(DT_INIT_ARRAY)->d_un.d_ptr;
    for (size_t i = 0; i < e.RelaCount(); ++i) {
      if (e.Rela(i)->r_offset == init_array) {
        e.Rela(i)->r_addend = e.Phdr(PT_LOAD, 3)->p_vaddr;
      }
    }
  });
  // SysV hash (la_sysv.so has DT_HASH only).
  add(
      "sysv-nchain-huge",
      [](ElfBytes& e) {
        e.At<uint32_t>(e.Dyn(DT_HASH)->d_un.d_ptr)[1] = 0x40000000;
      },
      "la_sysv");
  add(
      "dt-hash-outside",
      [](ElfBytes& e) { e.Dyn(DT_HASH)->d_un.d_ptr = 0x7fff00000000ull; },
      "la_sysv");
  return cases;
}

// Each malformed copy fails to load with an error naming the compartment;
// the host survives, nothing of the copy is visible, and the compartment
// works afterwards.
TEST(LoaderAttackTest, MalformedFilesAreRejected) {
  TempDir dir;
  auto box = MakeBox({.name = "malformed"});
  ASSERT_NE(box, nullptr);
  for (const MalformedCase& c : MalformedCases()) {
    SCOPED_TRACE(c.name);
    ElfBytes elf(ReadBytes(Plugin(c.plugin)));
    c.mutate(elf);
    const std::string path = dir.File(c.name + ".so");
    WriteBytes(path, elf.bytes());
    absl::Status s = box->Load(path);
    EXPECT_FALSE(s.ok()) << "loaded";
    EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box))) << s;
    EXPECT_EQ(box->Lookup<int(int)>("la_ok").status().code(),
              absl::StatusCode::kNotFound);
    if (!s.ok()) std::cerr << "  [" << c.name << "] " << s << "\n";
    // A constructor that faulted leaves the compartment refusing calls.
    if (box->last_fault() != nullptr) {
      ASSERT_TRUE(box->Reset().ok());
    }
  }
  ExpectCompartmentWorks(box.get());
  ExpectProcessWorks();
}

// Corruptions the loader may tolerate: the host survives, and if the object
// loads it works. (A DT_VERNEED outside the image is ignored: imports are
// then bound without their version.)
TEST(LoaderAttackTest, ToleratedCorruptionsDoNotHurt) {
  TempDir dir;
  const std::vector<std::pair<std::string, Mutation>> cases = {
      {"dt-verneed-outside",
       [](ElfBytes& e) { e.Dyn(DT_VERNEED)->d_un.d_ptr = 0x7fff00000000ull; }},
      {"dt-verneednum-huge",
       [](ElfBytes& e) { e.Dyn(DT_VERNEEDNUM)->d_un.d_val = ~0ull; }},
      {"section-headers-gone",
       [](ElfBytes& e) {
         e.eh()->e_shoff = 0;
         e.eh()->e_shnum = 0;
         e.bytes().resize(e.LoadedFileEnd());
       }},
  };
  for (const auto& [name, mutate] : cases) {
    SCOPED_TRACE(name);
    ElfBytes elf(ReadBytes(Plugin("la_data")));
    mutate(elf);
    const std::string path = dir.File(name + ".so");
    WriteBytes(path, elf.bytes());
    auto box = MakeBox({.name = "tolerated"});
    absl::Status s = box->Load(path);
    std::cerr << "  [" << name << "] " << s << "\n";
    if (s.ok()) {
      auto ok = box->Lookup<int(int)>("la_ok");
      ASSERT_TRUE(ok.ok());
      EXPECT_EQ(Value(box->Call(*ok, 3)), 7);
    } else {
      EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
    }
  }
  ExpectProcessWorks();
}

// The child of ExpectLoadSurvives: exits 0 when Load returned an error, 3
// when it loaded; a crash of the host kills it.
[[noreturn]] void LoadInChild(const std::string& path) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  auto box = MakeBox({.name = "malformed-child"});
  absl::Status s = box->Load(path);
  fprintf(stderr, "Load: %s\n", s.ToString().c_str());
  _exit(s.ok() ? 3 : 0);
}

// Loads `path` in a child (a death test that must survive): a crash of the
// host while parsing an untrusted file kills the child, not this binary.
void ExpectLoadSurvives(const std::string& path) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(LoadInChild(path), ::testing::ExitedWithCode(0), "Load: ");
}

std::string WriteMutated(const TempDir& dir, const char* plugin,
                         const std::string& name, const Mutation& m) {
  ElfBytes elf(ReadBytes(Plugin(plugin)));
  m(elf);
  const std::string path = dir.File(name + ".so");
  WriteBytes(path, elf.bytes());
  return path;
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc GnuSymbolCount, called from Map):
// the bucket values of DT_GNU_HASH are not checked before
// chain[last - symoffset] is read, so one bucket set to 0x7ffffff0 makes the
// loader read ~8 GiB past the table with host rights: SIGSEGV in the host.
// (The chain walk `while (!(chain[...] & 1)) ++last` is unbounded the same
// way when the last chain has no terminator.)
TEST(LoaderAttackTest, GnuHashBucketOutOfRangeIsRejected) {
  TempDir dir = TempDir::ForDeathTest("gnu-bucket");
  const std::string path =
      WriteMutated(dir, "la_data", "gnu-hash-bucket-huge", [](ElfBytes& e) {
        uint32_t* gh = e.At<uint32_t>(e.Dyn(DT_GNU_HASH)->d_un.d_ptr);
        const uint32_t nbuckets = gh[0], bloom = gh[2];
        uint32_t* buckets = gh + 4 + 2 * bloom;
        for (uint32_t i = 0; i < nbuckets; ++i) buckets[i] = 0x7ffffff0;
      });
  ExpectLoadSurvives(path);
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc Map and FindDefinition): for DT_HASH
// only the 8-byte header is checked; nbucket is not, so bucket[h % nbucket]
// and chain (= bucket + nbucket) lie anywhere up to 16 GiB past the table and
// FindDefinition, resolving the object's imports, reads there with host
// rights: SIGSEGV in the host.
TEST(LoaderAttackTest, SysvHashNbucketOutOfRangeIsRejected) {
  TempDir dir = TempDir::ForDeathTest("sysv-nbucket");
  const std::string path =
      WriteMutated(dir, "la_sysv", "sysv-nbucket-huge", [](ElfBytes& e) {
        e.At<uint32_t>(e.Dyn(DT_HASH)->d_un.d_ptr)[0] = 0xfffffff0;
      });
  ExpectLoadSurvives(path);
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc Map): every pointer taken from the
// file is checked against the span [0, highest PT_LOAD end), not against the
// segments actually mapped; the gaps between segments are reserved PROT_NONE
// zone. Moving the RW segment 16 pages up leaves PT_DYNAMIC in such a gap:
// the loader reads the dynamic section there with host rights: SIGSEGV in the
// host. (DT_SYMTAB, DT_GNU_HASH, DT_RELA, ... pointing into a gap do the same.)
TEST(LoaderAttackTest, PointerIntoGapBetweenSegmentsIsRejected) {
  TempDir dir = TempDir::ForDeathTest("gap");
  const std::string path =
      WriteMutated(dir, "la_data", "dynamic-in-gap",
                   [](ElfBytes& e) { e.Phdr(PT_LOAD, 3)->p_vaddr += 0x10000; });
  ExpectLoadSurvives(path);
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc Relocate; same root cause as
// RelocationCannotWriteWrpkruIntoCode): relocations may write the
// loader's own tables after Map validated them. A RELATIVE relocation aimed
// at DT_GNU_HASH's bloom_size makes it (base + addend), about 4 billion; the
// next symbol lookup (FindDefinition, resolving a GLOB_DAT) computes the
// buckets 32 GiB away and reads there with host rights.
TEST(LoaderAttackTest, RelocationCannotRewriteValidatedHashTable) {
  TempDir dir = TempDir::ForDeathTest("reloc-hash");
  const std::string path =
      WriteMutated(dir, "la_data", "reloc-rewrites-gnu-hash", [](ElfBytes& e) {
        const uint64_t gh = e.Dyn(DT_GNU_HASH)->d_un.d_ptr;
        // The RELATIVE relocation of __dso_handle (.data, last of them).
        Elf64_Rela* victim = nullptr;
        for (size_t i = 0; i < e.RelaCount(); ++i) {
          if (ELF64_R_TYPE(e.Rela(i)->r_info) == R_X86_64_RELATIVE) {
            victim = e.Rela(i);
          }
        }
        ASSERT_NE(victim, nullptr);
        victim->r_offset = gh + 8;  // bloom_size, bloom_shift
        victim->r_addend = 0;
      });
  ExpectLoadSurvives(path);
}

// The child of CompartmentRewritingItsHashTableCannotCrashLookup.
[[noreturn]] void LookupAfterRewriteInChild(const std::string& path) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  auto box = MakeBox({.name = "hash-rewrite"});
  absl::Status s = box->Load(path);
  fprintf(stderr, "Load: %s\n", s.ToString().c_str());
  if (!s.ok()) _exit(0);
  auto poke = box->Lookup<void(uint32_t, uint32_t)>("la_poke");
  if (!poke.ok()) _exit(4);
  // From inside: bloom_size of the table the host searches.
  if (!box->Call(*poke, 2u, 0x7ffffff0u).ok()) _exit(5);
  absl::StatusOr<int (*)(int)> ok = box->Lookup<int(int)>("la_ok");
  fprintf(stderr, "Lookup: %s\n", ok.status().ToString().c_str());
  _exit(0);
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc Map/FindDefinition/Lookup): the
// hash table is validated once, in Map, but Lookup reads it again every time
// (nbuckets, bloom_size) from the image, and nothing requires DT_GNU_HASH to
// lie in a read-only segment. Here DT_GNU_HASH points at a copy of the table
// in la_hashrw.so's .data; after Load, compartment code sets bloom_size to
// 0x7ffffff0, and the host's next Lookup reads 16 GiB past the table with
// host rights: SIGSEGV in the host, caused by compartment code. (Symbol and
// string tables in writable memory are the same: Lookup strcmp's strings
// the compartment can unterminate.)
TEST(LoaderAttackTest, CompartmentRewritingItsHashTableCannotCrashLookup) {
  TempDir dir = TempDir::ForDeathTest("inside-hash");
  const std::string path =
      WriteMutated(dir, "la_hashrw", "hash-in-data", [](ElfBytes& e) {
        Elf64_Dyn* gnu = e.Dyn(DT_GNU_HASH);
        const uint32_t* gh = e.At<uint32_t>(gnu->d_un.d_ptr);
        const uint32_t nbuckets = gh[0], symoffset = gh[1], bloom = gh[2];
        const size_t nsyms = e.Section(SHT_DYNSYM)->sh_size / sizeof(Elf64_Sym);
        const size_t bytes = 16 + 8 * size_t{bloom} + 4 * size_t{nbuckets} +
                             4 * (nsyms - symoffset);
        ASSERT_LE(bytes, 4096u);
        const uint32_t copy = e.DynSym("la_hash_copy");
        ASSERT_NE(copy, 0u);
        const uint64_t at = e.Sym(copy)->st_value;
        memcpy(e.At<uint8_t>(at), gh, bytes);
        gnu->d_un.d_ptr = at;
      });
  // Control: the copied table works.
  {
    auto box = MakeBox({.name = "hash-copy"});
    absl::Status s = box->Load(path);
    ASSERT_TRUE(s.ok()) << s;
    auto ok = box->Lookup<int(int)>("la_ok");
    ASSERT_TRUE(ok.ok()) << ok.status();
    EXPECT_EQ(Value(box->Call(*ok, 2)), 5);
  }
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(LookupAfterRewriteInChild(path), ::testing::ExitedWithCode(0),
              "Load: ");
}

// ------------------------------------------------------------- 8. Reset

TEST(LoaderAttackTest, ResetRestoresPluginDataAndRerunsConstructors) {
  auto box = MakeBox({.name = "reset"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto get = box->Lookup<int()>("la_get_counter");
  auto bump = box->Lookup<int()>("la_bump_counter");
  auto runs = box->Lookup<int()>("la_ctor_count");
  auto counter = box->Lookup<int>("la_counter");
  ASSERT_TRUE(get.ok() && bump.ok() && runs.ok() && counter.ok());
  EXPECT_EQ(Value(box->Call(*runs)), 1);
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  EXPECT_EQ(Value(box->Call(*bump)), 43);
  ASSERT_TRUE(box->Reset().ok());
  // Same addresses, fresh data, constructor run once more on fresh .bss.
  EXPECT_EQ(Value(box->Call(*get)), 41);
  EXPECT_EQ(**counter, 41);
  EXPECT_EQ(Value(box->Call(*runs)), 1);
  auto again = box->Lookup<int()>("la_get_counter");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *get);
  EXPECT_EQ(PkeyOf(reinterpret_cast<uintptr_t>(*counter)), box->pkey());
  // After a fault too.
  auto write = box->Lookup<void()>("la_write_table");
  ASSERT_TRUE(write.ok());
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  EXPECT_EQ(box->Call(*write).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(box->Call(*get).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(*get)), 41);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(box->Reset().ok());
    EXPECT_EQ(Value(box->Call(*bump)), 42);
  }
}

// A constructor that faulted during Load: Reset, then the compartment loads
// and resets as usual.
TEST(LoaderAttackTest, ResetAfterAFaultingConstructorWorks) {
  auto box = MakeBox({.name = "reset-after-ctor"});
  g_attack_target = reinterpret_cast<uintptr_t>(&g_host_word);
  ASSERT_TRUE(box->Expose("la_target", &AttackTarget).ok());
  absl::Status bad = box->Load(Plugin("la_ctor_attack"));
  ASSERT_EQ(bad.code(), absl::StatusCode::kAborted) << bad;
  ASSERT_TRUE(box->Reset().ok());
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto bump = box->Lookup<int()>("la_bump_counter");
  ASSERT_TRUE(bump.ok());
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  absl::Status reset = box->Reset();
  EXPECT_TRUE(reset.ok()) << reset;
  EXPECT_EQ(Value(box->Call(*bump)), 42);
  EXPECT_EQ(g_host_word, kHostWordValue);
}

// Found at a0e9148, fixed since (runtime/loader/elf_loader.cc ElfLoader::Load error path, with
// allocator/compartment_heap.cc ReserveImageSpace): a Load that fails after
// Map reserved image space (an undefined symbol here; equally a bad
// relocation, a refused IFUNC, a malformed table) releases the pages but not
// the reservation: image_low_ stays lowered. The next successful Load is
// placed below the hole, while Reset reserves from the top again, so Reload
// finds another base and fails with kInternal ("it would not go back to the
// address it had before Reset"), and the compartment refuses every call from
// then on. A plugin whose load fails thus breaks the next Reset.
TEST(LoaderAttackTest, ResetWorksAfterAFailedLoad) {
  auto box = MakeBox({.name = "reset-after-failure"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  // la_host.so imports host_log, which nobody exposed here.
  absl::Status failed = box->Load(Plugin("la_host"));
  ASSERT_EQ(failed.code(), absl::StatusCode::kNotFound) << failed;
  ASSERT_TRUE(box->Load(Plugin("la_imports")).ok());
  auto ok = box->Lookup<int(int)>("la_ok");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Value(box->Call(*ok, 1)), 3);
  absl::Status reset = box->Reset();
  EXPECT_TRUE(reset.ok()) << reset;
  EXPECT_EQ(Value(box->Call(*ok, 1)), 3);
}

// Found at a0e9148 (runtime/loader/import_policy.cc): getenv was allowlisted
// because "the environment is key-0 memory", but after the host's setenv
// glibc keeps it on the host heap (trusted key) and every getenv in a
// compartment faulted. Loaded code now sees no environment at all.
TEST(LoaderAttackTest, GetenvSeesNoEnvironment) {
  ASSERT_EQ(setenv("MPKBOX_LA_SETENV", "from-host", 1), 0);
  auto box = MakeBox({.name = "getenv"});
  ASSERT_TRUE(box->Load(Plugin("la_imports")).ok());
  auto get = box->Lookup<const char*(const char*)>("la_getenv");
  ASSERT_TRUE(get.ok());
  absl::StatusOr<Tainted<const char*>> r =
      box->Call(*get, static_cast<const char*>("MPKBOX_LA_SETENV"));
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) {
    EXPECT_EQ(Value(r), nullptr);
  }
  unsetenv("MPKBOX_LA_SETENV");
}


// ------------------------------- 9. mpkbox-scan and Load read the same bytes

// Found at 4fdb520, fixed since (runtime/loader/code_scan.cc ScanElfFile):
// Load copies an executable PT_LOAD from the start of its first page,
// PageDown(p_offset), and maps that page executable, but mpkbox-scan scanned
// from p_offset. An instruction starting in [PageDown(p_offset), p_offset),
// or whose prefix lies there, was refused by Load and missed or misnamed by
// mpkbox-scan (lld lays out text segments so: p_offset 0x8d0, the bytes
// before it .dynsym and .rodata). Both now take a segment's bytes from
// ElfFile::Segment (elf_file.h). Here la_data.so's text segment starts 0x40
// bytes into its page.
TEST(LoaderAttackTest, ScanAndLoadAgreeOnBytesBeforeTheSegmentStart) {
  struct Case {
    const char* name;
    size_t at;  // from the page start; the segment starts at 0x40
    const char* hex;
    const char* instruction;
  };
  const Case cases[] = {{"before", 0x10, "0f01ef", "WRPKRU"},
                        {"prefix-before", 0x3f, "480fae2f", "XRSTOR64"}};
  TempDir dir;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ElfBytes elf(ReadBytes(Plugin("la_data")));
    Elf64_Phdr* text = elf.ExecLoad();
    ASSERT_NE(text, nullptr);
    ASSERT_EQ(text->p_offset % 0x1000, 0u);
    ASSERT_GT(text->p_filesz, 0x40u);
    const uint64_t page_offset = text->p_offset, page_vaddr = text->p_vaddr;
    text->p_offset += 0x40;
    text->p_vaddr += 0x40;
    text->p_filesz -= 0x40;
    text->p_memsz -= 0x40;
    const std::vector<uint8_t> bytes = Hex(c.hex);
    memcpy(elf.bytes().data() + page_offset + c.at, bytes.data(),
           bytes.size());
    const std::string path = dir.File(std::string(c.name) + ".so");
    WriteBytes(path, elf.bytes());

    auto box = MakeBox({.name = std::string("offpage-") + c.name});
    absl::Status s = box->Load(path);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr(std::string(" ") + c.instruction + " at"));
    EXPECT_EQ(OffsetInMessage(s.message()),
              static_cast<int64_t>(page_offset + c.at))
        << s;

    const ScanRun scan = RunScan({path});
    EXPECT_EQ(scan.exit_code, 1) << scan.output;
    const std::vector<ScanLine> found = ParseScan(scan.output, path);
    EXPECT_EQ(found.size(), 1u) << scan.output;
    if (found.empty()) continue;
    EXPECT_EQ(found[0].offset, page_offset + c.at) << scan.output;
    EXPECT_EQ(found[0].vaddr, page_vaddr + c.at) << scan.output;
    EXPECT_EQ(found[0].instruction, c.instruction) << scan.output;
  }
}

// Found at 4fdb520, fixed since (runtime/loader/elf_file.cc
// CheckDisjointPages): PT_LOAD segments could share pages. Each is mapped
// and tagged in program-header order, so a page of a writable segment listed
// before the text segment ended up executable, holding the text segment's
// scanned bytes, but relocations wrote it as part of the writable segment.
// Here la_patch.so's first segment is made writable and stretched over
// la_patch_attack's placeholder, and the GLOB_DAT of __gmon_start__ writes
// la_abs_code (WRPKRU and NOPs) there: the compartment ran WRPKRU and wrote
// host memory. No linker lays out segments so (none of the system's 1636
// ELF files does); Load and mpkbox-scan now refuse them.
TEST(LoaderAttackTest, SegmentsSharingAPageCannotCarryRelocationsIntoCode) {
  ElfBytes elf(ReadBytes(Plugin("la_patch")));
  const size_t site = PlaceholderOffset(elf);
  ASSERT_NE(site, 0u);
  const uint64_t site_vaddr = elf.VaddrOfOffset(site);
  Elf64_Phdr* first = elf.Phdr(PT_LOAD, 0);
  ASSERT_NE(first, nullptr);
  ASSERT_EQ(first->p_offset, 0u);
  ASSERT_EQ(first->p_vaddr, 0u);
  ASSERT_EQ(site_vaddr, site) << "text is not at its file offset";
  first->p_flags = PF_R | PF_W;
  first->p_filesz = first->p_memsz = site + 8;
  const uint32_t abs_sym = elf.DynSym("la_abs_code");
  const uint32_t gmon = elf.DynSym("__gmon_start__");
  ASSERT_NE(abs_sym, 0u);
  ASSERT_NE(gmon, 0u);
  Elf64_Rela* victim = nullptr;
  for (size_t i = 0; i < elf.RelaCount(); ++i) {
    Elf64_Rela* r = elf.Rela(i);
    if (ELF64_R_TYPE(r->r_info) == R_X86_64_GLOB_DAT &&
        ELF64_R_SYM(r->r_info) == gmon) {
      victim = r;
    }
  }
  ASSERT_NE(victim, nullptr);
  victim->r_offset = site_vaddr;
  victim->r_info = ELF64_R_INFO(abs_sym, R_X86_64_GLOB_DAT);
  TempDir dir;
  const std::string path = dir.File("la_patch_shared_page.so");
  WriteBytes(path, elf.bytes());

  const ScanRun scan = RunScan({path});
  EXPECT_EQ(scan.exit_code, 2) << scan.output;
  EXPECT_THAT(scan.output, HasSubstr("segments 0 and 1 share a page"));

  auto box = MakeBox({.name = "shared-page"});
  absl::Status s = box->Load(path);
  EXPECT_FALSE(s.ok()) << "segments sharing a page loaded";
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("segments 0 and 1 share a page"));
  g_host_word = kHostWordValue;
  if (s.ok()) {
    auto attack = box->Lookup<void(volatile uint64_t*)>("la_patch_attack");
    ASSERT_TRUE(attack.ok());
    absl::Status call = box->Call(*attack, &g_host_word);
    EXPECT_FALSE(call.ok()) << "the compartment ran WRPKRU";
  }
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  ExpectProcessWorks();
}

// The child of RelroCannotRetagHostMemory: loads la_data.so, learns its
// base, points the copy's PT_GNU_RELRO at a host page and reloads it there
// (Reset maps the same file at the same address). Exits 0 if the page kept
// key 0, 3 if it carries the compartment's key.
alignas(4096) char g_relro_target[4096];  // a host page of its own
[[noreturn]] void RelroRetagInChild(const std::string& path) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  char* page = g_relro_target;
  ElfBytes elf(ReadBytes(Plugin("la_data")));
  WriteBytes(path, elf.bytes());
  auto box = MakeBox({.name = "relro-retag"});
  if (box == nullptr || !box->Load(path).ok()) _exit(5);
  auto ok = box->Lookup<int(int)>("la_ok");
  const uint32_t la_ok = elf.DynSym("la_ok");
  if (!ok.ok() || la_ok == 0) _exit(6);
  const uintptr_t base =
      reinterpret_cast<uintptr_t>(*ok) - elf.Sym(la_ok)->st_value;
  Elf64_Phdr* relro = elf.Phdr(PT_GNU_RELRO);
  if (relro == nullptr) _exit(7);
  relro->p_vaddr = reinterpret_cast<uintptr_t>(page) - base;
  relro->p_memsz = 4096;
  WriteBytes(path, elf.bytes());
  absl::Status reset = box->Reset();
  fprintf(stderr, "Reset: %s\n", reset.ToString().c_str());
  _exit(testing::PkeyOf(reinterpret_cast<uintptr_t>(page)) == box->pkey()
            ? 3
            : 0);
}

// Found at 4fdb520, fixed since (runtime/loader/elf_segments.cc
// PlanSegments): PT_GNU_RELRO was never checked. ProtectSegments tagged
// [base + p_vaddr, base + p_vaddr + p_memsz) read-only with the
// compartment's key, wherever that was: an object whose RELRO points
// outside its image moves a host page to the compartment's key (readable
// inside, and the host's next write there faults). Now RELRO must lie in
// the image.
TEST(LoaderAttackTest, RelroCannotRetagHostMemory) {
  TempDir dir = TempDir::ForDeathTest("relro");
  const std::string path = dir.File("la_data_relro.so");
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(RelroRetagInChild(path), ::testing::ExitedWithCode(0),
              "Reset: .*PT_GNU_RELRO lies outside the image");
}

}  // namespace
}  // namespace mpkbox
