// Accidental privileged byte sequences in loaded code (loader attacks:
// loader_attack_util.h; docs/INTERNALS.md, "Gadget bytes"): where WRPKRU,
// XRSTOR(S) or WR{FS,GS}BASE bytes span two instructions, Load re-encodes
// one of them in its private copy and the code still computes the same;
// a jump into the rewritten bytes finds no privileged instruction; and
// where no rewrite is provably safe, Load refuses, naming file, offset and
// bytes. The real instructions' refusals: loader_attack_privileged_code_test.
#include <nettle/sha2.h>
#include <nettle/sm3.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "runtime/loader/code_scan.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::FindBytes;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

constexpr char kNettle[] = "/usr/lib/x86_64-linux-gnu/libnettle.so.8";

// What la_rewrite.so's functions compute (tests/plugins/la_rewrite.c).
uint32_t Rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
uint32_t ExpectedWrpkruFn(uint32_t a, uint32_t b) {
  return Rol(a, 15) ^ (a + b);
}

// The sequences in la_rewrite.so and how Load re-encodes them.
struct RewriteCase {
  const char* instruction;
  const char* rewrite;  // in mpkbox-scan's detail
};
constexpr RewriteCase kRewrites[] = {
    {"WRPKRU", "01 ef -> 03 fd"},
    {"XRSTOR", "8b 44 0f ae -> 8b 44 39 ae"},
    {"XRSTORS", "8b 44 0f c7 -> 8b 44 39 c7"},
};

// mpkbox-scan: every sequence of la_rewrite.so is rewritable, and how; the
// file loads (exit 0).
TEST(GadgetRewriteTest, ScanReportsEachSpanningSequenceAsRewritable) {
  const std::string path = Plugin("la_rewrite");
  const ScanRun scan = RunScan({path});
  EXPECT_EQ(scan.exit_code, 0) << scan.output;
  EXPECT_THAT(scan.output,
              HasSubstr(path + ": loads after rewriting 3 sequence(s)"));
  const std::vector<ScanLine> found = ParseScan(scan.output, path);
  ASSERT_EQ(found.size(), std::size(kRewrites)) << scan.output;
  for (size_t i = 0; i < found.size(); ++i) {
    EXPECT_EQ(found[i].instruction, kRewrites[i].instruction) << scan.output;
    EXPECT_EQ(found[i].verdict, "rewritable") << scan.output;
    EXPECT_THAT(found[i].detail, HasSubstr(kRewrites[i].rewrite));
  }
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(GadgetRewriteTest,
                             ScanReportsEachSpanningSequenceAsRewritable);

// The loaded executable segment of la_rewrite.so: its bytes in the
// compartment, and in the file.
struct LoadedText {
  std::vector<uint8_t> loaded, file;
  uintptr_t base;  // of the image
  uint64_t vaddr;  // of the segment's first byte
};
LoadedText ReadLoadedText(uintptr_t function, const char* symbol) {
  ElfBytes elf(ReadBytes(Plugin("la_rewrite")));
  const Elf64_Phdr* text = elf.ExecLoad();
  const uint32_t sym = elf.DynSym(symbol);
  EXPECT_NE(text, nullptr);
  EXPECT_NE(sym, 0u);
  LoadedText t;
  if (text == nullptr || sym == 0) return t;
  t.base = function - elf.Sym(sym)->st_value;
  t.vaddr = text->p_vaddr;
  const auto* at = reinterpret_cast<const uint8_t*>(t.base + text->p_vaddr);
  t.loaded.assign(at, at + text->p_filesz);
  t.file.assign(elf.bytes().begin() + text->p_offset,
                elf.bytes().begin() + text->p_offset + text->p_filesz);
  return t;
}

// Each function computes what it did before the rewrite; the loaded code
// differs from the file in the rewritten bytes only and has no privileged
// sequence at any offset.
TEST(GadgetRewriteTest, RewrittenCodeComputesTheSameAndIsClean) {
  auto box = MakeBox({.name = "rewrite"});
  absl::Status s = box->Load(Plugin("la_rewrite"));
  ASSERT_TRUE(s.ok()) << s;
  auto wrpkru = box->Lookup<void(int, int, int*)>("la_rw_wrpkru");
  auto xrstor = box->Lookup<int(long)>("la_rw_xrstor");
  auto xrstors = box->Lookup<int(long)>("la_rw_xrstors");
  ASSERT_TRUE(wrpkru.ok() && xrstor.ok() && xrstors.ok());
  absl::StatusOr<void*> out = box->Allocate(sizeof(int));
  ASSERT_TRUE(out.ok()) << out.status();
  int* result = static_cast<int*>(*out);
  for (auto [a, b] : {std::pair{1, 2}, {0x12345678, 0x0fedcba9}, {-7, 99}}) {
    ASSERT_TRUE(box->Call(*wrpkru, a, b, result).ok());
    EXPECT_EQ(
        static_cast<uint32_t>(*result),
        ExpectedWrpkruFn(static_cast<uint32_t>(a), static_cast<uint32_t>(b)));
  }
  for (long i = 0; i < 8; ++i) {
    EXPECT_EQ(Value(box->Call(*xrstor, i)), 11 * (i + 1));
    EXPECT_EQ(Value(box->Call(*xrstors, i)), 11 * (i + 1));
  }

  const LoadedText t =
      ReadLoadedText(reinterpret_cast<uintptr_t>(*wrpkru), "la_rw_wrpkru");
  ASSERT_FALSE(t.loaded.empty());
  EXPECT_EQ(internal::FindPrivilegedInstructions(t.file).size(), 3u);
  EXPECT_TRUE(internal::FindPrivilegedInstructions(t.loaded).empty());
  size_t changed = 0;
  for (size_t i = 0; i < t.file.size(); ++i)
    changed += t.file[i] != t.loaded[i];
  EXPECT_EQ(changed, 2u + 1 + 1) << "bytes other than the rewrites";
}

// The address of la_rw_wrpkru's 0f 01 ef in the compartment, from the
// bytes around it in the file (rol $15,%eax; add %ebp,%edi).
uintptr_t WrpkruSite(Compartment* box) {
  auto fn = box->Lookup<void(int, int, int*)>("la_rw_wrpkru");
  EXPECT_TRUE(fn.ok());
  if (!fn.ok()) return 0;
  const LoadedText t =
      ReadLoadedText(reinterpret_cast<uintptr_t>(*fn), "la_rw_wrpkru");
  const std::vector<size_t> hits = FindBytes(t.file, Hex("c1c00f01ef"));
  EXPECT_EQ(hits.size(), 1u);
  return hits.empty() ? 0 : t.base + t.vaddr + hits[0] + 2;
}

// An address, not a pointer: Call refuses pointers into host data before
// the gate, and the attack is the store the compartment makes itself.
uintptr_t HostWordAddress() {
  return reinterpret_cast<uintptr_t>(&g_host_word);
}

// The attack: from inside, eax = ecx = edx = 0 and a jump to the 0f of the
// spanning sequence. In the file's bytes that runs WRPKRU (every key open)
// and then la_rw_wrpkru's store, aimed at a host word. Rewritten, the bytes
// there are 0f 03 fd (lsl %ebp,%edi): PKRU stays, the store faults, the
// call is aborted and the host word keeps its value.
TEST(GadgetRewriteTest, JumpIntoRewrittenBytesFindsNoWrpkru) {
  auto box = MakeBox({.name = "rewrite-jump"});
  ASSERT_TRUE(box->Load(Plugin("la_rewrite")).ok());
  auto jump = box->Lookup<void(uintptr_t, uintptr_t)>("la_rw_jump");
  ASSERT_TRUE(jump.ok());
  const uintptr_t site = WrpkruSite(box.get());
  ASSERT_NE(site, 0u);
  EXPECT_EQ(
      memcmp(reinterpret_cast<const void*>(site), Hex("0f03fd").data(), 3), 0);
  g_host_word = kHostWordValue;
  absl::Status call = box->Call(*jump, site, HostWordAddress());
  EXPECT_EQ(call.code(), absl::StatusCode::kAborted) << call;
  EXPECT_EQ(g_host_word, kHostWordValue) << "host memory written";
  g_host_word = kHostWordValue;
  // Reset loads the file again, rewritten again: the code still works.
  ASSERT_TRUE(box->Reset().ok());
  auto wrpkru = box->Lookup<void(int, int, int*)>("la_rw_wrpkru");
  ASSERT_TRUE(wrpkru.ok()) << wrpkru.status();
  EXPECT_EQ(WrpkruSite(box.get()), site);
  absl::StatusOr<void*> out = box->Allocate(sizeof(int));
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(box->Call(*wrpkru, 3, 4, static_cast<int*>(*out)).ok());
  EXPECT_EQ(static_cast<uint32_t>(*static_cast<int*>(*out)),
            ExpectedWrpkruFn(3, 4));
  ExpectCompartmentWorks(box.get());
  ExpectProcessWorks();
}

// The control, in a child: with the file's bytes put back where Load
// rewrote them (the host writes the compartment's code), the same jump
// runs WRPKRU and writes the host word.
[[noreturn]] void JumpWithoutRewriteInChild() {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  auto box = MakeBox({.name = "rewrite-undone"});
  if (box == nullptr || !box->Load(Plugin("la_rewrite")).ok()) _exit(5);
  auto jump = box->Lookup<void(uintptr_t, uintptr_t)>("la_rw_jump");
  const uintptr_t site = WrpkruSite(box.get());
  if (!jump.ok() || site == 0) _exit(6);
  const uintptr_t page = site & ~uintptr_t{4095};
  if (mprotect(reinterpret_cast<void*>(page), 8192,
               PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
    _exit(7);
  }
  memcpy(reinterpret_cast<void*>(site), Hex("0f01ef").data(), 3);
  g_host_word = kHostWordValue;
  absl::Status call = box->Call(*jump, site, HostWordAddress());
  fprintf(stderr, "call: %s\n", call.ToString().c_str());
  // la_rw_wrpkru stores 32 bits.
  _exit((g_host_word & 0xffffffff) == 0x5a5a5a5a ? 3 : 0);
}

TEST(GadgetRewriteTest, WithoutTheRewriteTheJumpRunsWrpkru) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(JumpWithoutRewriteInChild(), ::testing::ExitedWithCode(3),
              "call: ");
}

// The unwind table is untrusted input parsed with host rights: with random
// bytes written over .eh_frame_hdr and .eh_frame, Load either refuses or
// maps code in which no privileged sequence is left, and the process goes
// on.
TEST(GadgetRewriteTest, CorruptUnwindTablesAreSafe) {
  const ElfBytes pristine(ReadBytes(Plugin("la_rewrite")));
  ElfBytes probe = pristine;
  const Elf64_Phdr* hdr = probe.Phdr(PT_GNU_EH_FRAME);
  ASSERT_NE(hdr, nullptr);
  const size_t from = hdr->p_offset;
  const size_t to = std::min(probe.bytes().size(), from + 0x200);
  std::mt19937 random(14);
  TempDir dir;
  int loaded = 0;
  for (int round = 0; round < 200; ++round) {
    ElfBytes elf = pristine;
    const int writes = 1 + round % 8;
    for (int w = 0; w < writes; ++w) {
      elf.bytes()[from + random() % (to - from)] = random() & 0xff;
    }
    const std::string path = dir.File("corrupt.so");
    WriteBytes(path, elf.bytes());
    auto box = MakeBox({.name = "corrupt-unwind"});
    absl::Status s = box->Load(path);
    if (!s.ok()) continue;
    ++loaded;
    auto fn = box->Lookup<void(int, int, int*)>("la_rw_wrpkru");
    ASSERT_TRUE(fn.ok());
    const LoadedText t =
        ReadLoadedText(reinterpret_cast<uintptr_t>(*fn), "la_rw_wrpkru");
    EXPECT_TRUE(internal::FindPrivilegedInstructions(t.loaded).empty())
        << "round " << round;
  }
  EXPECT_GT(loaded, 0) << "no corruption left the file loadable";
  ExpectProcessWorks();
}

struct RefusedCase {
  const char* plugin;
  const char* symbol;
  const char* instruction;
  const char* bytes;
  const char* why;  // in the message and mpkbox-scan's detail
};

class RefusedRewriteTest : public ::testing::TestWithParam<RefusedCase> {};

// Where no rewrite is provably safe, Load refuses, naming the compartment,
// the file, the offset, the bytes and why; mpkbox-scan agrees and exits 1.
TEST_P(RefusedRewriteTest, LoadRefusesNamingFileOffsetAndBytes) {
  const RefusedCase& c = GetParam();
  const std::string path = Plugin(c.plugin);
  auto box = MakeBox({.name = std::string("refused-") + c.plugin});
  absl::Status s = box->Load(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  const std::string msg(s.message());
  EXPECT_THAT(msg, HasSubstr(Named(*box)));
  EXPECT_THAT(msg, HasSubstr(RealPath(path)));
  EXPECT_THAT(msg,
              HasSubstr(std::string(c.instruction) + " at file offset 0x"));
  EXPECT_THAT(msg, HasSubstr(std::string("bytes ") + c.bytes +
                             ": cannot be rewritten: "));
  EXPECT_THAT(msg, HasSubstr(c.why));
  const ScanRun scan = RunScan({path});
  EXPECT_EQ(scan.exit_code, 1) << scan.output;
  const std::vector<ScanLine> found = ParseScan(scan.output, path);
  ASSERT_EQ(found.size(), 1u) << scan.output;
  EXPECT_EQ(found[0].verdict, "not rewritable");
  EXPECT_EQ(found[0].bytes, c.bytes);
  EXPECT_THAT(found[0].detail, HasSubstr(c.why));
  EXPECT_THAT(msg,
              HasSubstr(absl::StrFormat("file offset 0x%x ", found[0].offset)));
  EXPECT_EQ(box->Lookup<void()>(c.symbol).status().code(),
            absl::StatusCode::kNotFound);
  ExpectCompartmentWorks(box.get());
}

INSTANTIATE_TEST_SUITE_P(
    Plugins, RefusedRewriteTest,
    ::testing::Values(
        // Rewritable by itself, but in code no unwind table entry
        // describes: where its instructions start is not known.
        RefusedCase{"la_rewrite_no_cfi", "la_rw_no_cfi", "WRPKRU", "0f 01 ef",
                    "unwind table"},
        // Across mov imm32, scasb and shl: none has another encoding of its
        // length.
        RefusedCase{"la_rewrite_fsbase", "la_rw_fsbase", "WRFSBASE",
                    "f3 0f ae d1",
                    "no equivalent encoding of the same length of `mov "
                    "$0xFF30000, %eax` at vaddr"}),
    [](const ::testing::TestParamInfo<RefusedCase>& param_info) {
      return std::string(param_info.param.plugin);
    });

std::string HexString(const uint8_t* bytes, size_t n) {
  std::string hex;
  for (size_t i = 0; i < n; ++i) absl::StrAppendFormat(&hex, "%02x", bytes[i]);
  return hex;
}

// "sha256" and "sm3" of `input`, by nettle_native (the system's nettle,
// called natively in a process of its own).
std::map<std::string, std::string> NativeDigests(const std::string& input) {
  TempDir dir;
  const std::string file = dir.File("input");
  WriteBytes(file, std::vector<uint8_t>(input.begin(), input.end()));
  const std::string cmd =
      std::string("'") + NETTLE_NATIVE + "' < '" + file + "'";
  std::map<std::string, std::string> digests;
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return digests;
  char name[16], hex[129];
  while (fscanf(p, "%15s %128s", name, hex) == 2) digests[name] = hex;
  EXPECT_EQ(pclose(p), 0);
  return digests;
}

// Debian's libnettle has 0f 01 ef twice in sm3_compress (rol $15,%r15d;
// add %ebp,%edi). It loads, and SHA-256 and SM3 (whose compression
// function is the rewritten one) give what the host's own nettle gives.
TEST(GadgetRewriteTest, NettleLoadsAndHashesAsNative) {
  const ScanRun scan = RunScan({kNettle});
  EXPECT_EQ(scan.exit_code, 0) << scan.output;
  const std::vector<ScanLine> found = ParseScan(scan.output, kNettle);
  ASSERT_EQ(found.size(), 2u) << scan.output;
  for (const ScanLine& line : found) {
    EXPECT_EQ(line.verdict, "rewritable");
    EXPECT_THAT(line.detail, HasSubstr("`add %ebp, %edi`"));
    EXPECT_THAT(line.detail, HasSubstr("01 ef -> 03 fd"));
  }
  EXPECT_EQ(found[0].offset, 0x27a71u);

  auto box = MakeBox({.name = "nettle"});
  absl::Status s = box->Load(kNettle);
  ASSERT_TRUE(s.ok()) << s;
  std::string input;
  for (int i = 0; i < 1000; ++i) input += "mpkbox hashes in a compartment ";
  absl::StatusOr<void*> mem =
      box->Allocate(sizeof(sha256_ctx) + sizeof(sm3_ctx) + 64 + input.size());
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto* sha_ctx = static_cast<sha256_ctx*>(*mem);
  auto* h3 = reinterpret_cast<sm3_ctx*>(sha_ctx + 1);
  auto* digest = reinterpret_cast<uint8_t*>(h3 + 1);
  auto* data = digest + 64;
  memcpy(data, input.data(), input.size());

  auto sha_init =
      box->Lookup<decltype(nettle_sha256_init)>("nettle_sha256_init");
  auto sha_update =
      box->Lookup<decltype(nettle_sha256_update)>("nettle_sha256_update");
  auto sha_digest =
      box->Lookup<decltype(nettle_sha256_digest)>("nettle_sha256_digest");
  ASSERT_TRUE(sha_init.ok() && sha_update.ok() && sha_digest.ok());
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*sha_init)), box->pkey());
  ASSERT_TRUE(box->Call(*sha_init, sha_ctx).ok());
  ASSERT_TRUE(box->Call(*sha_update, sha_ctx, input.size(),
                        static_cast<const uint8_t*>(data))
                  .ok());
  ASSERT_TRUE(
      box->Call(*sha_digest, sha_ctx, size_t{SHA256_DIGEST_SIZE}, digest).ok());
  const std::map<std::string, std::string> native = NativeDigests(input);
  EXPECT_EQ(HexString(digest, SHA256_DIGEST_SIZE), native.at("sha256"));

  auto h3_init = box->Lookup<decltype(nettle_sm3_init)>("nettle_sm3_init");
  auto h3_update =
      box->Lookup<decltype(nettle_sm3_update)>("nettle_sm3_update");
  auto h3_digest =
      box->Lookup<decltype(nettle_sm3_digest)>("nettle_sm3_digest");
  ASSERT_TRUE(h3_init.ok() && h3_update.ok() && h3_digest.ok());
  ASSERT_TRUE(box->Call(*h3_init, h3).ok());
  ASSERT_TRUE(
      box->Call(*h3_update, h3, input.size(), static_cast<const uint8_t*>(data))
          .ok());
  ASSERT_TRUE(box->Call(*h3_digest, h3, size_t{SM3_DIGEST_SIZE}, digest).ok());
  EXPECT_EQ(HexString(digest, SM3_DIGEST_SIZE), native.at("sm3"));
}

}  // namespace
}  // namespace mpkbox::loader_attack
