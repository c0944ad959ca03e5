// Privileged instructions in loaded code (loader attacks:
// loader_attack_util.h): Load refuses WRPKRU, XRSTOR(S/64) and WRFSBASE
// where mpkbox-scan finds them, and no code runs that was not scanned: not
// bytes past p_filesz, not bytes a relocation writes, not bytes written to
// the file after the scan.
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

// The attacks get the host word's address as an integer: Call refuses
// pointer arguments into host memory before the attack could run.
uintptr_t HostWordAddress() {
  return reinterpret_cast<uintptr_t>(&g_host_word);
}

using ::mpkbox::testing::FindBytes;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// The "file offset 0x..." of a Load error, or -1.
int64_t OffsetInMessage(absl::string_view message) {
  std::smatch m;
  const std::string s(message);
  if (!std::regex_search(s, m, std::regex("file offset 0x([0-9a-f]+)"))) {
    return -1;
  }
  return static_cast<int64_t>(std::stoull(m[1], nullptr, 16));
}

struct PrivilegedCase {
  const char* plugin;
  const char* instruction;  // as Load and mpkbox-scan name it
  const char* hex;          // its bytes at the reported offset
  const char* verdict;      // mpkbox-scan's: "real" or "not rewritable"
};

class PrivilegedInstructionTest
    : public ::testing::TestWithParam<PrivilegedCase> {};

// Load refuses the object with kPermissionDenied naming the compartment,
// the file, the file offset, the instruction and its bytes, and why it is
// not rewritten (a real instruction, or no provably safe rewrite); the
// offset is the one mpkbox-scan prints, and the file holds the
// instruction's bytes there.
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
  EXPECT_EQ(found[0].verdict, c.verdict) << scan.output;
  EXPECT_THAT(msg, HasSubstr("bytes " + found[0].bytes + ": "));
  EXPECT_THAT(msg, HasSubstr(std::string(c.verdict) == "real"
                                 ? ": a real instruction: "
                                 : ": cannot be rewritten: "));
  EXPECT_THAT(msg, HasSubstr(found[0].detail));

  // Nothing of it is visible.
  EXPECT_EQ(box->Lookup<void()>(c.plugin).status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

INSTANTIATE_TEST_SUITE_P(
    Plugins, PrivilegedInstructionTest,
    ::testing::Values(
        PrivilegedCase{"la_wrpkru", "WRPKRU", "0f01ef", "real"},
        // Inside an immediate: no other encoding of the mov has its length.
        PrivilegedCase{"la_wrpkru_hidden", "WRPKRU", "0f01ef00",
                       "not rewritable"},
        PrivilegedCase{"la_xrstor", "XRSTOR", "0fae2f", "real"},
        PrivilegedCase{"la_xrstors", "XRSTORS", "0fc71f", "real"},
        PrivilegedCase{"la_xrstor64", "XRSTOR64", "480fae2f", "real"},
        PrivilegedCase{"la_wrfsbase", "WRFSBASE", "f3480faed0", "real"}),
    [](const ::testing::TestParamInfo<PrivilegedCase>& param_info) {
      return std::string(param_info.param.plugin);
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

  // Only sequences Load rewrites: the file loads, exit 0.
  ScanRun rewritable = RunScan({Plugin("la_rewrite")});
  EXPECT_EQ(rewritable.exit_code, 0) << rewritable.output;
  EXPECT_THAT(rewritable.output,
              HasSubstr(Plugin("la_rewrite") + ": loads after rewriting"));

  // Several files: refusals win over clean and rewritable files, errors
  // over all.
  ScanRun mixed = RunScan({libz, Plugin("la_rewrite"), Plugin("la_wrpkru")});
  EXPECT_EQ(mixed.exit_code, 1) << mixed.output;
  ScanRun worst = RunScan({Plugin("la_wrpkru"), text, libz});
  EXPECT_EQ(worst.exit_code, 2) << worst.output;
  EXPECT_EQ(ParseScan(worst.output, Plugin("la_wrpkru")).size(), 1u);
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(LoaderAttackTest, ScanExitCodes);

// f3 2e 48 0f ae d0 runs as WRFSBASE: a scan keyed on F3 0F would miss it.
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

// The scan covers an executable segment's file bytes only: whatever shares
// a page with them past p_filesz must be zeros in the image, never code.
TEST(LoaderAttackTest, BytesPastExecutableFileszNeverRun) {
  // la_tail.so with its executable segment's file part cut right before
  // la_tail_attack's WRPKRU; p_memsz stays, so everything the loader checks
  // (DT_INIT, the symbols) still lies in the segment and the Load succeeds.
  // The WRPKRU, the rest of la_tail_attack and _fini follow in the file, on
  // the same page. DT_FINI goes: _fini now lies past p_filesz too.
  ElfBytes elf(ReadBytes(Plugin("la_tail")));
  Elf64_Phdr* text = elf.ExecLoad();
  ASSERT_NE(text, nullptr);
  const std::vector<size_t> hits = FindBytes(elf.bytes(), Hex("0f01ef"));
  ASSERT_EQ(hits.size(), 1u);
  ASSERT_GT(hits[0], text->p_offset);
  ASSERT_LT(hits[0], text->p_offset + text->p_filesz);
  const uint64_t cut = text->p_vaddr + (hits[0] - text->p_offset);
  const uint64_t page_end = (cut + 4095) & ~uint64_t{4095};
  text->p_filesz = hits[0] - text->p_offset;
  Elf64_Dyn* fini = elf.Dyn(DT_FINI);
  ASSERT_NE(fini, nullptr);
  fini->d_un.d_ptr = 0;
  const uint32_t attack_sym = elf.DynSym("la_tail_attack");
  ASSERT_NE(attack_sym, 0u);
  const uint64_t attack_vaddr = elf.Sym(attack_sym)->st_value;
  ASSERT_LT(attack_vaddr, cut);  // the function starts in the file part
  TempDir dir;
  const std::string path = dir.File("la_tail_cut.so");
  WriteBytes(path, elf.bytes());
  // The premise: past p_filesz, the WRPKRU is not scanned.
  const ScanRun scan = RunScan({path});
  EXPECT_EQ(scan.exit_code, 0) << scan.output;

  auto box = MakeBox({.name = "tail"});
  absl::Status s = box->Load(path);
  ASSERT_TRUE(s.ok()) << s;
  auto attack = box->Lookup<void(uintptr_t)>("la_tail_attack");
  ASSERT_TRUE(attack.ok()) << attack.status();
  // Every image byte from p_filesz to the end of its page is zero.
  const auto* image_base = reinterpret_cast<const uint8_t*>(*attack) -
                           attack_vaddr;
  std::vector<uint8_t> tail(image_base + cut, image_base + page_end);
  EXPECT_EQ(tail, std::vector<uint8_t>(page_end - cut, 0))
      << "bytes past p_filesz of the executable segment were mapped";
  // And the payload does not run: la_tail_attack's xors run into zeros
  // (add %al, (%rax) with rax 0) and fault.
  g_host_word = kHostWordValue;
  absl::Status call = box->Call(*attack, HostWordAddress());
  EXPECT_EQ(call.code(), absl::StatusCode::kAborted)
      << call << ": the compartment ran code past p_filesz";
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  ExpectCompartmentWorks(box.get());
  ExpectProcessWorks();
}

// Finds la_patch_attack's 8-byte placeholder (after its three xors) in the
// file.
size_t PlaceholderOffset(ElfBytes& elf) {
  const std::vector<size_t> hits =
      FindBytes(elf.bytes(), Hex("31c031c931d29090909090909090"));
  EXPECT_EQ(hits.size(), 1u);
  return hits.empty() ? 0 : hits[0] + 6;
}

// Control: la_patch.so as built loads, and its attack function faults on the
// host global (the placeholder is eight NOPs).
TEST(LoaderAttackTest, PatchPluginControlFaults) {
  auto box = MakeBox({.name = "patch-control"});
  ASSERT_TRUE(box->Load(Plugin("la_patch")).ok());
  auto attack = box->Lookup<void(uintptr_t)>("la_patch_attack");
  ASSERT_TRUE(attack.ok());
  absl::Status s = box->Call(*attack, HostWordAddress());
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(g_host_word, kHostWordValue);
  ExpectCompartmentWorks(box.get());
}

// The GLOB_DAT relocation of symbol `sym`, or null.
Elf64_Rela* GlobDatOf(ElfBytes& elf, uint32_t sym) {
  for (size_t i = 0; i < elf.RelaCount(); ++i) {
    Elf64_Rela* r = elf.Rela(i);
    if (ELF64_R_TYPE(r->r_info) == R_X86_64_GLOB_DAT &&
        ELF64_R_SYM(r->r_info) == sym) {
      return r;
    }
  }
  return nullptr;
}

// If a patched la_patch.so loaded anyway, runs its attack: it must neither
// run WRPKRU nor write host memory, and the process goes on.
void ExpectPatchAttackStopped(Compartment* box, const absl::Status& load) {
  g_host_word = kHostWordValue;
  if (load.ok()) {
    auto attack = box->Lookup<void(uintptr_t)>("la_patch_attack");
    ASSERT_TRUE(attack.ok());
    absl::Status call = box->Call(*attack, HostWordAddress());
    EXPECT_FALSE(call.ok()) << "the compartment ran WRPKRU";
  }
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  ExpectProcessWorks();
}

// Relocations run after the scan: one into code could plant a WRPKRU.
TEST(LoaderAttackTest, RelocationCannotWriteWrpkruIntoCode) {
  ElfBytes elf(ReadBytes(Plugin("la_patch")));
  const size_t site = PlaceholderOffset(elf);
  ASSERT_NE(site, 0u);
  const uint32_t abs_sym = elf.DynSym("la_abs_code");
  const uint32_t gmon = elf.DynSym("__gmon_start__");
  ASSERT_NE(abs_sym, 0u);
  ASSERT_NE(gmon, 0u);
  ASSERT_EQ(elf.Sym(abs_sym)->st_shndx, SHN_ABS);
  Elf64_Rela* victim = GlobDatOf(elf, gmon);
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
  ExpectPatchAttackStopped(box.get(), s);
}

// Code mapped from the file by path would change when the file is rewritten.
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
  auto attack = box->Lookup<void(uintptr_t)>("la_patch_attack");
  ASSERT_TRUE(attack.ok());
  // In place, as a writer of the file would.
  const int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::vector<uint8_t> wrpkru = Hex("0f01ef");
  ASSERT_EQ(pwrite(fd, wrpkru.data(), wrpkru.size(), site), 3);
  close(fd);
  g_host_word = kHostWordValue;
  absl::Status call = box->Call(*attack, HostWordAddress());
  EXPECT_EQ(call.code(), absl::StatusCode::kAborted)
      << call << ": the compartment ran code that was never scanned";
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  ExpectProcessWorks();
}

// Where the scanner and the loader read segments, and what a segment may
// reach: one ELF reader for both (runtime/loader/elf_file.h).


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
  Elf64_Rela* victim = GlobDatOf(elf, gmon);
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
  ExpectPatchAttackStopped(box.get(), s);
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
  _exit(internal::PkeyOfAddress(reinterpret_cast<uintptr_t>(page)) == box->pkey()
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
}  // namespace mpkbox::loader_attack
