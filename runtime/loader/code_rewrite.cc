#include "runtime/loader/code_rewrite.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/loader/code_scan.h"

namespace mpkbox::internal {
namespace {

using Kind = GadgetVerdict::Kind;

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

// Zydis: x86 only, decodes every extension up to AVX-512/AMX, and reports
// where each field (REX, ModRM, SIB, displacement, immediates) lies in the
// bytes, which re-encoding needs (docs/INTERNALS.md says why not Capstone).
class Disassembler {
 public:
  Disassembler() {
    ZydisDecoderInit(&decoder_, ZYDIS_MACHINE_MODE_LONG_64,
                     ZYDIS_STACK_WIDTH_64);
    ZydisFormatterInit(&formatter_, ZYDIS_FORMATTER_STYLE_ATT);
  }

  // The length of the instruction at the start of `bytes`, or 0.
  size_t Length(absl::Span<const uint8_t> bytes) const {
    ZydisDecodedInstruction insn;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(
            &decoder_, nullptr, bytes.data(), bytes.size(), &insn))) {
      return 0;
    }
    return insn.length;
  }

  std::optional<Decoded> Decode(absl::Span<const uint8_t> bytes) const {
    Decoded d;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder_, bytes.data(),
                                             bytes.size(), &d.insn, d.ops))) {
      return std::nullopt;
    }
    return d;
  }

  std::string Format(const Decoded& d, uint64_t vaddr) const {
    char text[256];
    if (!ZYAN_SUCCESS(ZydisFormatterFormatInstruction(
            &formatter_, &d.insn, d.ops, d.insn.operand_count_visible, text,
            sizeof(text), vaddr, nullptr))) {
      return "?";
    }
    return text;
  }

 private:
  ZydisDecoder decoder_;
  ZydisFormatter formatter_;
};

bool IsPrivileged(ZydisMnemonic m) {
  return m == ZYDIS_MNEMONIC_WRPKRU || m == ZYDIS_MNEMONIC_XRSTOR ||
         m == ZYDIS_MNEMONIC_XRSTOR64 || m == ZYDIS_MNEMONIC_XRSTORS ||
         m == ZYDIS_MNEMONIC_XRSTORS64 || m == ZYDIS_MNEMONIC_WRFSBASE ||
         m == ZYDIS_MNEMONIC_WRGSBASE;
}

bool SameOperand(const ZydisDecodedOperand& x, const ZydisDecodedOperand& y) {
  if (x.type != y.type || x.size != y.size || x.visibility != y.visibility ||
      x.actions != y.actions || x.element_type != y.element_type ||
      x.element_size != y.element_size || x.element_count != y.element_count ||
      x.attributes != y.attributes) {
    return false;
  }
  switch (x.type) {
    case ZYDIS_OPERAND_TYPE_REGISTER:
      return x.reg.value == y.reg.value;
    case ZYDIS_OPERAND_TYPE_MEMORY: {
      const auto &a = x.mem, &b = y.mem;
      // base + index*1 is index + base*1 (the segment compared apart:
      // rbp or rsp as base would make it SS).
      const bool same_regs =
          (a.base == b.base && a.index == b.index) ||
          (a.scale == 1 && a.base == b.index && a.index == b.base);
      return same_regs && a.type == b.type && a.segment == b.segment &&
             a.scale == b.scale &&
             a.disp.has_displacement == b.disp.has_displacement &&
             a.disp.value == b.disp.value;
    }
    case ZYDIS_OPERAND_TYPE_POINTER:
      return x.ptr.segment == y.ptr.segment && x.ptr.offset == y.ptr.offset;
    case ZYDIS_OPERAND_TYPE_IMMEDIATE:
      return x.imm.is_signed == y.imm.is_signed &&
             x.imm.is_relative == y.imm.is_relative &&
             x.imm.value.u == y.imm.value.u;
    default:
      return true;
  }
}

// Prefixes and the like that change what an instruction does; the ACCEPTS_
// attributes say what its opcode could take, and may differ.
constexpr ZydisInstructionAttributes kMeaningfulAttributes =
    ZYDIS_ATTRIB_HAS_LOCK | ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE |
    ZYDIS_ATTRIB_HAS_REPNE | ZYDIS_ATTRIB_HAS_BND | ZYDIS_ATTRIB_HAS_XACQUIRE |
    ZYDIS_ATTRIB_HAS_XRELEASE | ZYDIS_ATTRIB_HAS_NOTRACK |
    ZYDIS_ATTRIB_HAS_SEGMENT | ZYDIS_ATTRIB_HAS_OPERANDSIZE |
    ZYDIS_ATTRIB_HAS_ADDRESSSIZE | ZYDIS_ATTRIB_IS_PRIVILEGED;

// Whether `b` does exactly what `a` does: the same instruction on the same
// operands, with the same prefixes, in the same number of bytes. TEST and
// XCHG may have their two operands the other way round.
bool SameSemantics(const Decoded& a, const Decoded& b) {
  const ZydisDecodedInstruction &x = a.insn, &y = b.insn;
  if (x.length != y.length || x.mnemonic != y.mnemonic ||
      x.encoding != y.encoding || x.operand_width != y.operand_width ||
      x.address_width != y.address_width ||
      x.operand_count != y.operand_count ||
      x.operand_count_visible != y.operand_count_visible ||
      (x.attributes & kMeaningfulAttributes) !=
          (y.attributes & kMeaningfulAttributes)) {
    return false;
  }
  const bool commutative = (x.mnemonic == ZYDIS_MNEMONIC_TEST ||
                            x.mnemonic == ZYDIS_MNEMONIC_XCHG) &&
                           x.operand_count_visible == 2;
  bool in_order = true, swapped = commutative;
  for (size_t i = 0; i < x.operand_count; ++i) {
    in_order = in_order && SameOperand(a.ops[i], b.ops[i]);
    const size_t j = i < 2 ? 1 - i : i;
    swapped = swapped && SameOperand(a.ops[i], b.ops[j]);
  }
  return in_order || swapped;
}

constexpr uint8_t kRexR = 0x04, kRexX = 0x02, kRexB = 0x01;

// Swaps two REX bits (`x` and `y`, single bits) of the byte at `rex`.
void SwapRexBits(std::vector<uint8_t>& b, int rex, uint8_t x, uint8_t y) {
  if (rex < 0) return;
  const uint8_t v = b[rex];
  const bool has_x = v & x, has_y = v & y;
  b[rex] = (v & ~(x | y)) | (has_x ? y : 0) | (has_y ? x : 0);
}

// Encodings of `d` (whose bytes are `bytes`) of the same length that may do
// the same: the caller keeps only those SameSemantics confirms.
//  - register to register ALU and MOV ops (00-3b, 88-8b with mod 3):
//    the other direction bit, ModRM reg and rm swapped (01 ef add %ebp,%edi
//    is 03 fd);
//  - TEST and XCHG of two registers: the operands swapped;
//  - base + index*1: base and index swapped in the SIB byte.
std::vector<std::vector<uint8_t>> Alternatives(
    const Decoded& d, absl::Span<const uint8_t> bytes) {
  std::vector<std::vector<uint8_t>> out;
  const ZydisDecodedInstruction& insn = d.insn;
  if (insn.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY ||
      !(insn.attributes & ZYDIS_ATTRIB_HAS_MODRM)) {
    return out;
  }
  const int m = insn.raw.modrm.offset;
  const int rex =
      insn.attributes & ZYDIS_ATTRIB_HAS_REX ? insn.raw.rex.offset : -1;
  const std::vector<uint8_t> original(bytes.begin(), bytes.end());
  if (insn.raw.modrm.mod == 3 && insn.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT &&
      m >= 1) {
    const uint8_t op = bytes[m - 1];
    const bool alu = op < 0x40 && (op & 7) < 4;
    const bool mov = op >= 0x88 && op <= 0x8b;
    const bool commutative = op >= 0x84 && op <= 0x87;
    if (alu || mov || commutative) {
      std::vector<uint8_t> b = original;
      if (!commutative) b[m - 1] = op ^ 2;
      b[m] = 0xc0 | (insn.raw.modrm.rm << 3) | insn.raw.modrm.reg;
      SwapRexBits(b, rex, kRexR, kRexB);
      out.push_back(std::move(b));
    }
  }
  if (insn.raw.modrm.mod != 3 && insn.raw.modrm.rm == 4 &&
      insn.raw.sib.scale == 0) {
    std::vector<uint8_t> b = original;
    const int s = insn.raw.sib.offset;
    b[s] = (insn.raw.sib.base << 3) | insn.raw.sib.index;
    SwapRexBits(b, rex, kRexX, kRexB);
    out.push_back(std::move(b));
  }
  return out;
}

// Decodes [from, to) of `code` linearly, calling visit(offset, length) for
// each instruction. Returns where decoding failed, or `to` if the
// instructions tile the range exactly.
template <typename Visit>
size_t DecodeLinear(const Disassembler& disassembler,
                    absl::Span<const uint8_t> code, size_t from, size_t to,
                    Visit visit) {
  size_t at = from;
  while (at < to) {
    const size_t n =
        disassembler.Length(code.subspan(at, std::min<size_t>(15, to - at)));
    if (n == 0) return at;
    visit(at, n);
    at += n;
  }
  return at;
}

// Whether any privileged sequence in `code` overlaps [from, to).
bool AnyOverlapping(absl::Span<const uint8_t> code, size_t from, size_t to) {
  constexpr size_t kMargin = 32;  // longer than any sequence with prefixes
  const size_t lo = from > kMargin ? from - kMargin : 0;
  const size_t hi = std::min(code.size(), to + kMargin);
  for (const PrivilegedInstruction& p :
       FindPrivilegedInstructions(code.subspan(lo, hi - lo))) {
    if (lo + p.offset < to && lo + p.offset + p.length > from) return true;
  }
  return false;
}

class Rewriter {
 public:
  Rewriter(const LoadSegment& segment, const UnwindTable& unwind)
      : segment_(segment), unwind_(unwind) {}

  SegmentRewrite Run() && {
    const std::vector<PrivilegedInstruction> found =
        FindPrivilegedInstructions(segment_.bytes);
    if (found.empty()) return {};
    out_.code.assign(segment_.bytes.begin(), segment_.bytes.end());
    std::vector<size_t> kept;  // offsets of the sequences not rewritten
    for (const PrivilegedInstruction& p : found) {
      GadgetVerdict v = VerdictAt(p, segment_.bytes);
      if (out_.verdicts.size() == kMaxSequences) {
        // Bounds the work and memory a crafted file can ask of a Load.
        v.detail = absl::StrFormat(
            "more than %u sequences in one segment: not rewriting them all",
            kMaxSequences);
        out_.verdicts.push_back(std::move(v));
        return std::move(out_);
      }
      Classify(p, v);
      if (v.kind != Kind::kRewritten) kept.push_back(p.offset);
      out_.verdicts.push_back(std::move(v));
    }
    // Each rewrite was checked where it was made; this covers every offset.
    for (const PrivilegedInstruction& p :
         FindPrivilegedInstructions(out_.code)) {
      if (std::binary_search(kept.begin(), kept.end(), p.offset)) continue;
      GadgetVerdict v = VerdictAt(p, out_.code);
      v.detail = "still there after rewriting";
      out_.verdicts.push_back(std::move(v));
    }
    return std::move(out_);
  }

 private:
  static constexpr size_t kMaxSequences = 4096;

  uint64_t Vaddr(size_t at) const { return segment_.pages.start + at; }

  // A kRefused verdict on `p`, with its bytes as `code` has them.
  GadgetVerdict VerdictAt(const PrivilegedInstruction& p,
                          absl::Span<const uint8_t> code) const {
    return GadgetVerdict{
        .file_offset = segment_.file_offset + p.offset,
        .vaddr = Vaddr(p.offset),
        .instruction = p.name,
        .bytes = std::vector<uint8_t>(code.begin() + p.offset,
                                      code.begin() + p.offset + p.length),
        .kind = Kind::kRefused,
        .detail = {}};
  }

  void Classify(const PrivilegedInstruction& p, GadgetVerdict& v) {
    const size_t begin = p.offset, end = p.offset + p.length;
    if (!AnyOverlapping(out_.code, begin, end)) {
      v.kind = Kind::kRewritten;
      v.detail = "removed by the rewrite of an earlier sequence";
      return;
    }
    // Disassemble the function holding it, from its start: the decoding
    // must tile it exactly, ending on its last byte.
    const std::optional<FunctionRange> f = unwind_.FunctionAt(Vaddr(begin));
    if (!f || f->start < Vaddr(0) || f->end > Vaddr(out_.code.size()) ||
        Vaddr(end) > f->end) {
      v.detail =
          "it does not lie inside one function the unwind table "
          "(.eh_frame_hdr) describes (data, or code without unwind "
          "information), so where instructions start is unknown";
      return;
    }
    const Function* function = DecodeFunction(*f);
    if (function == nullptr) {
      v.detail =
          "decoding more than twice the segment's bytes to classify its "
          "sequences: the unwind table's functions overlap";
      return;
    }
    if (function->stop != f->end - Vaddr(0)) {
      v.detail = absl::StrFormat(
          "the function at vaddr 0x%x does not decode at vaddr 0x%x", f->start,
          Vaddr(function->stop));
      return;
    }
    std::vector<std::pair<size_t, size_t>> overlapping;  // offset, length
    auto it = std::upper_bound(
        function->instructions.begin(), function->instructions.end(), begin,
        [](size_t at, const std::pair<size_t, size_t>& i) {
          return at < i.first;
        });
    if (it != function->instructions.begin()) --it;
    for (; it != function->instructions.end() && it->first < end; ++it) {
      if (it->first + it->second > begin) overlapping.push_back(*it);
    }
    std::vector<std::string> names;
    for (const auto& [o, n] : overlapping) {
      std::optional<Decoded> d =
          disassembler_.Decode(absl::MakeConstSpan(out_.code).subspan(o, n));
      if (!d) {
        v.detail = absl::StrFormat("vaddr 0x%x does not decode", Vaddr(o));
        return;
      }
      if (IsPrivileged(d->insn.mnemonic)) {
        v.kind = Kind::kReal;
        v.detail = absl::StrFormat(
            "it is the instruction `%s` at vaddr 0x%x, an instruction "
            "boundary of the disassembly from the function start at 0x%x",
            disassembler_.Format(*d, Vaddr(o)), Vaddr(o), f->start);
        return;
      }
      names.push_back(absl::StrFormat(
          "`%s` at vaddr 0x%x", disassembler_.Format(*d, Vaddr(o)), Vaddr(o)));
    }
    for (const auto& [o, n] : overlapping) {
      if (TryRewrite(o, n, begin, end, v)) return;
    }
    v.detail = absl::StrFormat(
        "no equivalent encoding of the same length of %s removes it",
        absl::StrJoin(names, ", "));
  }

  // Re-encodes the instruction at [o, o + n) if that removes the sequence
  // at [begin, end) and makes no new one.
  bool TryRewrite(size_t o, size_t n, size_t begin, size_t end,
                  GadgetVerdict& v) {
    const std::vector<uint8_t> before(out_.code.begin() + o,
                                      out_.code.begin() + o + n);
    std::optional<Decoded> d = disassembler_.Decode(before);
    if (!d) return false;
    for (const std::vector<uint8_t>& alt : Alternatives(*d, before)) {
      std::optional<Decoded> e = disassembler_.Decode(alt);
      if (!e || !SameSemantics(*d, *e)) continue;
      std::copy(alt.begin(), alt.end(), out_.code.begin() + o);
      if (!AnyOverlapping(out_.code, std::min(o, begin),
                          std::max(o + n, end))) {
        v.kind = Kind::kRewritten;
        v.detail = absl::StrFormat("`%s` at vaddr 0x%x re-encoded: %s -> %s",
                                   disassembler_.Format(*d, Vaddr(o)), Vaddr(o),
                                   HexBytes(before), HexBytes(alt));
        return true;
      }
      std::copy(before.begin(), before.end(), out_.code.begin() + o);
    }
    return false;
  }

  // A function's instructions (offset, length), in order, and where
  // decoding stopped (its end if they tile it).
  struct Function {
    size_t from = 0, to = 0, stop = 0;
    std::vector<std::pair<size_t, size_t>> instructions;
  };

  // `f` decoded, reusing the last one (sequences come in offset order, and
  // same-length rewrites move no boundary); null once the decoding budget
  // is spent: crafted overlapping FDEs must not make a Load quadratic.
  const Function* DecodeFunction(const FunctionRange& f) {
    const size_t from = f.start - Vaddr(0), to = f.end - Vaddr(0);
    if (last_.from == from && last_.to == to && to > from) return &last_;
    if (to - from > budget_) return nullptr;
    budget_ -= to - from;
    last_ = Function{.from = from, .to = to, .stop = 0, .instructions = {}};
    last_.stop = DecodeLinear(disassembler_, out_.code, from, to,
                              [&](size_t at, size_t n) {
                                last_.instructions.push_back({at, n});
                              });
    return &last_;
  }

  const LoadSegment& segment_;
  const UnwindTable& unwind_;
  size_t budget_ = 2 * segment_.bytes.size();  // bytes left to decode
  Function last_;
  Disassembler disassembler_;
  SegmentRewrite out_;
};

}  // namespace

std::string HexBytes(absl::Span<const uint8_t> bytes) {
  return absl::StrJoin(bytes, " ", [](std::string* out, uint8_t b) {
    absl::StrAppendFormat(out, "%02x", b);
  });
}

SegmentRewrite RewriteGadgets(const LoadSegment& segment,
                              const UnwindTable& unwind) {
  return Rewriter(segment, unwind).Run();
}

size_t DecodeEveryFunction(const LoadSegment& segment,
                           const UnwindTable& unwind) {
  const Disassembler disassembler;
  const uint64_t first = segment.pages.start;
  const uint64_t last = first + segment.bytes.size();
  size_t tiled = 0;
  for (size_t i = 0; i < unwind.size(); ++i) {
    const std::optional<FunctionRange> f = unwind.FunctionAt(unwind.start(i));
    if (!f || f->start < first || f->end > last) continue;
    const size_t from = f->start - first, to = f->end - first;
    tiled += DecodeLinear(disassembler, segment.bytes, from, to,
                          [](size_t, size_t) {}) == to;
  }
  return tiled;
}

}  // namespace mpkbox::internal
