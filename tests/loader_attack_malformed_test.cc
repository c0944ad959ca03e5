// Malformed ELF files, parsed with host rights (loader attacks:
// loader_attack_util.h): truncated or corrupted headers, tables and
// relocations fail the Load naming the compartment, tolerated ones do no
// harm, and the ones that could crash the host are loaded in a child.
#include <elf.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

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

// Unchecked bucket values make the loader read gigabytes past the table.
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

// An unchecked nbucket makes the import lookup read far past DT_HASH.
TEST(LoaderAttackTest, SysvHashNbucketOutOfRangeIsRejected) {
  TempDir dir = TempDir::ForDeathTest("sysv-nbucket");
  const std::string path =
      WriteMutated(dir, "la_sysv", "sysv-nbucket-huge", [](ElfBytes& e) {
        e.At<uint32_t>(e.Dyn(DT_HASH)->d_un.d_ptr)[0] = 0xfffffff0;
      });
  ExpectLoadSurvives(path);
}

// The gaps between segments are PROT_NONE: a pointer must land in a segment.
TEST(LoaderAttackTest, PointerIntoGapBetweenSegmentsIsRejected) {
  TempDir dir = TempDir::ForDeathTest("gap");
  const std::string path =
      WriteMutated(dir, "la_data", "dynamic-in-gap",
                   [](ElfBytes& e) { e.Phdr(PT_LOAD, 3)->p_vaddr += 0x10000; });
  ExpectLoadSurvives(path);
}

// Relocations must not rewrite the hash table Map validated.
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

// Compartment code can rewrite a hash table in .data before the host's Lookup.
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

}  // namespace
}  // namespace mpkbox::loader_attack
