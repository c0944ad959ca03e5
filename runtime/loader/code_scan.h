// Finds instructions that change PKRU or the FS/GS base at any byte offset
// of code: a jump into the middle of another instruction executes them just
// the same (docs/DESIGN.md 6, item 3).
#ifndef MPKBOX_RUNTIME_LOADER_CODE_SCAN_H_
#define MPKBOX_RUNTIME_LOADER_CODE_SCAN_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/loader/code_rewrite.h"
#include "runtime/loader/elf_file.h"

namespace mpkbox::internal {

struct PrivilegedInstruction {
  size_t offset;     // of the instruction's first byte in the scanned bytes
  const char* name;  // "WRPKRU", "XRSTOR", "XRSTOR64", "XRSTORS", ...
  size_t length;     // bytes that encode it
};

// Every WRPKRU, XRSTOR, XRSTOR64, XRSTORS, XRSTORS64, WRFSBASE and WRGSBASE
// whose bytes start anywhere in `code`. XRSTOR loads PKRU when its mask
// asks; WRFSBASE moves the thread pointer the gate trusts.
std::vector<PrivilegedInstruction> FindPrivilegedInstructions(
    absl::Span<const uint8_t> code);

struct ScanFinding {
  uint64_t file_offset;
  uint64_t vaddr;
  std::string instruction;
};

// Every privileged instruction in the bytes `segment` puts in memory, the
// ones before p_offset included. The zeros after them complete none: each
// instruction's third byte (ModRM) is nonzero.
std::vector<ScanFinding> ScanSegment(const LoadSegment& segment);

// Scans the executable PT_LOAD segments of an ELF file, as the loader
// maps them, and says of each sequence found what the loader does with it
// (RewriteGadgets). Errors name the file and what is wrong with it.
absl::StatusOr<std::vector<GadgetVerdict>> ScanElfFile(absl::string_view path);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_CODE_SCAN_H_
