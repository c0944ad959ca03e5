// What the loader attack binaries share (loader_attack_util.h).
#include "tests/loader_attack_util.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

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

std::vector<uint8_t> Hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(
        static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/mpkbox_loader_attack.XXXXXX";
  const char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  if (d != nullptr) path_ = d;
}

TempDir TempDir::ForDeathTest(const std::string& test) {
  const bool child = !GTEST_FLAG_GET(internal_run_death_test).empty();
  const pid_t parent = child ? getppid() : getpid();
  TempDir dir(
      absl::StrCat("/tmp/mpkbox_loader_attack_death.", parent, ".", test),
      /*owner=*/!child);
  if (!child) mkdir(dir.path_.c_str(), 0700);
  return dir;
}

TempDir::TempDir(TempDir&& other) noexcept
    : path_(std::move(other.path_)), owner_(other.owner_) {
  other.path_.clear();
}

TempDir::~TempDir() {
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

TempDir::TempDir(std::string path, bool owner)
    : path_(std::move(path)), owner_(owner) {}

Elf64_Phdr* ElfBytes::Phdr(uint32_t type, int n) {
  for (size_t i = 0; i < eh()->e_phnum; ++i) {
    if (ph(i)->p_type == type && n-- == 0) return ph(i);
  }
  ADD_FAILURE() << "no program header of type " << type;
  return nullptr;
}

Elf64_Phdr* ElfBytes::ExecLoad() {
  for (size_t i = 0; i < eh()->e_phnum; ++i) {
    if (ph(i)->p_type == PT_LOAD && (ph(i)->p_flags & PF_X)) return ph(i);
  }
  ADD_FAILURE() << "no executable PT_LOAD";
  return nullptr;
}

size_t ElfBytes::Off(uint64_t vaddr) {
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

uint64_t ElfBytes::VaddrOfOffset(size_t off) {
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

Elf64_Dyn* ElfBytes::Dyn(int64_t tag) {
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

Elf64_Rela* ElfBytes::Rela(size_t i, bool plt) {
  Elf64_Dyn* table = Dyn(plt ? DT_JMPREL : DT_RELA);
  Elf64_Dyn* size = Dyn(plt ? DT_PLTRELSZ : DT_RELASZ);
  if (table == nullptr || size == nullptr) return nullptr;
  EXPECT_LT(i, size->d_un.d_val / sizeof(Elf64_Rela));
  return At<Elf64_Rela>(table->d_un.d_ptr) + i;
}

size_t ElfBytes::RelaCount(bool plt) {
  Elf64_Dyn* size = Dyn(plt ? DT_PLTRELSZ : DT_RELASZ);
  return size != nullptr ? size->d_un.d_val / sizeof(Elf64_Rela) : 0;
}

Elf64_Shdr* ElfBytes::Section(uint32_t type) {
  auto* sh = reinterpret_cast<Elf64_Shdr*>(b_.data() + eh()->e_shoff);
  for (size_t i = 0; i < eh()->e_shnum; ++i) {
    if (sh[i].sh_type == type) return &sh[i];
  }
  ADD_FAILURE() << "no section of type " << type;
  return nullptr;
}

uint32_t ElfBytes::DynSym(const std::string& name) {
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

Elf64_Sym* ElfBytes::Sym(uint32_t index) {
  Elf64_Shdr* dynsym = Section(SHT_DYNSYM);
  return reinterpret_cast<Elf64_Sym*>(b_.data() + dynsym->sh_offset) + index;
}

Elf64_Rela* ElfBytes::FirstRela(uint32_t type, bool plt) {
  for (size_t i = 0; i < RelaCount(plt); ++i) {
    if (ELF64_R_TYPE(Rela(i, plt)->r_info) == type) return Rela(i, plt);
  }
  ADD_FAILURE() << "no relocation of type " << type;
  return nullptr;
}

size_t ElfBytes::LoadedFileEnd() {
  size_t end = 0;
  for (size_t i = 0; i < eh()->e_phnum; ++i) {
    if (ph(i)->p_type == PT_LOAD) {
      end = std::max<size_t>(end, ph(i)->p_offset + ph(i)->p_filesz);
    }
  }
  return end;
}

volatile uint64_t g_host_word = kHostWordValue;

uintptr_t g_attack_target = 0;
uint64_t AttackTarget() { return g_attack_target; }

std::string Named(const Compartment& box) { return "'" + box.name() + "'"; }

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

std::vector<ScanLine> ParseScan(const std::string& output,
                                const std::string& file) {
  std::vector<ScanLine> lines;
  const std::regex re(
      "(.*): file offset 0x([0-9a-f]+) \\(vaddr 0x([0-9a-f]+)\\): (\\w+) "
      "\\[([0-9a-f ]+)\\]: (real|rewritable|not rewritable): (.*)");
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    std::smatch m;
    const std::string line = output.substr(start, end - start);
    if (std::regex_match(line, m, re) && m[1] == file) {
      lines.push_back({std::stoull(m[2], nullptr, 16),
                       std::stoull(m[3], nullptr, 16), m[4], m[5], m[6],
                       m[7]});
    }
    start = end + 1;
  }
  return lines;
}

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

}  // namespace mpkbox::loader_attack
