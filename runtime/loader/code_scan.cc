#include "runtime/loader/code_scan.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#include <cstdint>
#include <fstream>
#include <iterator>

#include "absl/strings/str_format.h"

namespace mpkbox::internal {
namespace {

bool IsRex(uint8_t b) { return (b & 0xf0) == 0x40; }
bool IsRexW(uint8_t b) { return (b & 0xf8) == 0x48; }
bool IsLegacyPrefix(uint8_t b) {
  return b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0x64 ||
         b == 0x65 || b == 0x66 || b == 0x67 || b == 0xf0 || b == 0xf2 ||
         b == 0xf3;
}

}  // namespace

std::vector<PrivilegedInstruction> FindPrivilegedInstructions(
    absl::Span<const uint8_t> code) {
  std::vector<PrivilegedInstruction> found;
  const size_t n = code.size();
  for (size_t i = 0; i + 2 < n; ++i) {
    if (code[i] != 0x0f) continue;
    const uint8_t op = code[i + 1], modrm = code[i + 2];
    const unsigned mod = modrm >> 6, reg = (modrm >> 3) & 7;
    const bool rex_w = i > 0 && IsRexW(code[i - 1]);
    const size_t start = rex_w ? i - 1 : i;
    if (op == 0x01 && modrm == 0xef) {
      found.push_back({i, "WRPKRU", 3});
    } else if (op == 0xae && mod != 3 && reg == 5) {
      found.push_back({start, rex_w ? "XRSTOR64" : "XRSTOR", i + 3 - start});
    } else if (op == 0xc7 && mod != 3 && reg == 3) {
      found.push_back({start, rex_w ? "XRSTORS64" : "XRSTORS", i + 3 - start});
    } else if (op == 0xae && mod == 3 && (reg == 2 || reg == 3)) {
      // F3 0F AE /2 or /3, with any other prefixes around the F3 (up to the
      // 15-byte instruction limit): without F3 these are other opcodes.
      size_t p = i;
      if (p > 0 && IsRex(code[p - 1])) --p;
      size_t f3 = SIZE_MAX;
      while (p > 0 && i - p < 14 && IsLegacyPrefix(code[p - 1])) {
        --p;
        if (code[p] == 0xf3) f3 = p;
      }
      if (f3 != SIZE_MAX) {
        found.push_back({f3, reg == 2 ? "WRFSBASE" : "WRGSBASE", i + 3 - f3});
      }
    }
  }
  return found;
}

absl::StatusOr<std::vector<ScanFinding>> ScanElfFile(absl::string_view path) {
  std::ifstream in{std::string(path), std::ios::binary};
  if (!in) {
    return absl::NotFoundError(
        absl::StrFormat("cannot open '%s': %s", path, strerror(errno)));
  }
  const std::vector<uint8_t> file{std::istreambuf_iterator<char>(in),
                                  std::istreambuf_iterator<char>()};
  Elf64_Ehdr eh;
  if (file.size() < sizeof(eh)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("'%s' is not an ELF file", path));
  }
  memcpy(&eh, file.data(), sizeof(eh));
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
    return absl::InvalidArgumentError(
        absl::StrFormat("'%s' is not an x86-64 ELF file", path));
  }
  if (eh.e_phoff > file.size() ||
      eh.e_phnum > (file.size() - eh.e_phoff) / sizeof(Elf64_Phdr)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("'%s': program headers lie outside the file", path));
  }
  std::vector<ScanFinding> findings;
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    memcpy(&ph, file.data() + eh.e_phoff + i * sizeof(ph), sizeof(ph));
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "'%s': executable segment %d lies outside the file", path, i));
    }
    for (const PrivilegedInstruction& p : FindPrivilegedInstructions(
             absl::MakeConstSpan(file.data() + ph.p_offset, ph.p_filesz))) {
      findings.push_back(
          {ph.p_offset + p.offset, ph.p_vaddr + p.offset, p.name});
    }
  }
  return findings;
}

}  // namespace mpkbox::internal
