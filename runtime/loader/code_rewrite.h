// Accidental privileged byte sequences in loaded code: where WRPKRU, XRSTOR
// and the rest are not that instruction but span or hide inside other
// instructions, re-encodes those instructions in the loader's private copy
// so that no byte offset decodes to them any more (as ERIM does). Only
// same-length equivalent encodings are used, checked by decoding them again,
// so no instruction boundary moves and no jump target breaks. Everything
// else is refused. Why this is sound: docs/INTERNALS.md, "Gadget bytes".
#ifndef MPKBOX_RUNTIME_LOADER_CODE_REWRITE_H_
#define MPKBOX_RUNTIME_LOADER_CODE_REWRITE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "runtime/loader/elf_file.h"
#include "runtime/loader/unwind_table.h"

namespace mpkbox::internal {

struct GadgetVerdict {
  enum class Kind {
    kRewritten,  // re-encoded away; `detail` says how
    kReal,       // the instruction itself, at an instruction boundary
    kRefused,    // no rewrite is provably safe; `detail` says why
  };
  uint64_t file_offset;
  uint64_t vaddr;
  std::string instruction;     // "WRPKRU", "XRSTOR", ...
  std::vector<uint8_t> bytes;  // the sequence as the file has it
  Kind kind;
  std::string detail;
};

// "0f 01 ef"
std::string HexBytes(absl::Span<const uint8_t> bytes);

struct SegmentRewrite {
  std::vector<uint8_t> code;  // the segment's bytes, rewritten; empty if
                              // there was nothing to rewrite
  std::vector<GadgetVerdict> verdicts;  // one per sequence found, in order
};

// Classifies every privileged sequence in the executable `segment` and
// rewrites the accidental ones it can. Only sequences inside a function
// `unwind` describes are rewritten: it is disassembled from its start.
// `code` is rescanned at every offset: whatever is still found there gets
// a kRefused verdict.
SegmentRewrite RewriteGadgets(const LoadSegment& segment,
                              const UnwindTable& unwind);

// Decodes every function `unwind` lists in `segment`, as the rewriter
// decodes the one holding a sequence, and returns how many the decoding
// tiles exactly. For bench/loader_bench.cc: the load-time cost if every
// function held a sequence.
size_t DecodeEveryFunction(const LoadSegment& segment,
                           const UnwindTable& unwind);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_CODE_REWRITE_H_
