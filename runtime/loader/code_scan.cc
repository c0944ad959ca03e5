#include "runtime/loader/code_scan.h"

#include <elf.h>

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "runtime/loader/elf_file.h"
#include "runtime/loader/unwind_table.h"

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

std::vector<ScanFinding> ScanSegment(const LoadSegment& segment) {
  std::vector<ScanFinding> findings;
  for (const PrivilegedInstruction& p :
       FindPrivilegedInstructions(segment.bytes)) {
    findings.push_back({segment.file_offset + p.offset,
                        segment.pages.start + p.offset, p.name});
  }
  return findings;
}

absl::StatusOr<std::vector<GadgetVerdict>> ScanElfFile(
    absl::string_view path) {
  absl::StatusOr<std::vector<uint8_t>> image = ReadFileImage(path);
  if (!image.ok()) return image.status();
  auto named = [path](const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrFormat("'%s': %s", path, s.message()));
  };
  absl::StatusOr<ElfFile> elf = ElfFile::Read(*image);
  if (!elf.ok()) return named(elf.status());
  // Every segment, checked as the loader checks them: only then are the
  // executable pages exactly the executable segments' pages.
  std::vector<LoadSegment> segments;
  for (size_t i = 0; i < elf->program_headers().size(); ++i) {
    if (elf->program_headers()[i].p_type != PT_LOAD) continue;
    absl::StatusOr<LoadSegment> segment = elf->Segment(i);
    if (!segment.ok()) return named(segment.status());
    segments.push_back(*segment);
  }
  if (absl::Status s = CheckDisjointPages(segments); !s.ok()) return named(s);
  const UnwindTable unwind(*elf);
  std::vector<GadgetVerdict> verdicts;
  for (const LoadSegment& segment : segments) {
    if (!segment.executable) continue;
    for (GadgetVerdict& v : RewriteGadgets(segment, unwind).verdicts) {
      verdicts.push_back(std::move(v));
    }
  }
  return verdicts;
}

}  // namespace mpkbox::internal
