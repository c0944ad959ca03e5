#include "runtime/loader/unwind_table.h"

#include <elf.h>
#include <string.h>

#include <algorithm>

#include "absl/types/span.h"

namespace mpkbox::internal {
namespace {

// DW_EH_PE_* (the LSB's .eh_frame_hdr and .eh_frame).
constexpr uint8_t kUdata4 = 0x03;
constexpr uint8_t kDatarelSdata4 = 0x3b;
constexpr uint8_t kOmit = 0xff;

// The file bytes [vaddr, vaddr + size) of a PT_LOAD, if all lie in one.
std::optional<absl::Span<const uint8_t>> FileBytesAt(const ElfFile& elf,
                                                     uint64_t vaddr,
                                                     uint64_t size) {
  for (size_t i = 0; i < elf.program_headers().size(); ++i) {
    const Elf64_Phdr& ph = elf.program_headers()[i];
    if (ph.p_type != PT_LOAD || vaddr < ph.p_vaddr) continue;
    const uint64_t into = vaddr - ph.p_vaddr;
    if (into > ph.p_filesz || size > ph.p_filesz - into) continue;
    auto segment = elf.Segment(i);  // bounds-checked against the file
    if (!segment.ok()) return std::nullopt;
    const uint64_t skip = ph.p_offset - segment->file_offset + into;
    return segment->bytes.subspan(skip, size);
  }
  return std::nullopt;
}

// The size of a DW_EH_PE-encoded value, for the fixed-size formats.
std::optional<uint64_t> EncodedSize(uint8_t encoding) {
  switch (encoding & 0x0f) {
    case 0x00:
    case 0x04:
    case 0x0c:
      return 8;  // absptr, (s)data8
    case 0x02:
    case 0x0a:
      return 2;  // (s)data2
    case 0x03:
    case 0x0b:
      return 4;  // (s)data4
    default:
      return std::nullopt;
  }
}

// Reads bounds-checked little-endian values and LEB128s from a span.
class Reader {
 public:
  explicit Reader(absl::Span<const uint8_t> bytes) : bytes_(bytes) {}
  bool ok() const { return ok_; }
  size_t at() const { return at_; }

  uint64_t Fixed(size_t n) {
    uint64_t v = 0;
    if (n > 8 || bytes_.size() - at_ < n) return Fail();
    memcpy(&v, bytes_.data() + at_, n);
    at_ += n;
    return v;
  }
  uint64_t Uleb() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const uint64_t b = Fixed(1);
      if (!ok_) return 0;
      v |= (b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    return Fail();
  }
  const char* String() {
    const void* nul = memchr(bytes_.data() + at_, 0, bytes_.size() - at_);
    if (nul == nullptr) {
      Fail();
      return "";
    }
    const char* s = reinterpret_cast<const char*>(bytes_.data() + at_);
    at_ = static_cast<const uint8_t*>(nul) - bytes_.data() + 1;
    return s;
  }

 private:
  uint64_t Fail() {
    ok_ = false;
    at_ = bytes_.size();
    return 0;
  }
  absl::Span<const uint8_t> bytes_;
  size_t at_ = 0;
  bool ok_ = true;
};

// The pointer encoding a CIE gives its FDEs ('R'), or nullopt.
std::optional<uint8_t> FdeEncoding(absl::Span<const uint8_t> cie) {
  Reader r(cie);
  if (r.Fixed(4) != 0) return std::nullopt;  // CIE id
  const uint64_t version = r.Fixed(1);
  const char* aug = r.String();
  r.Uleb();  // code alignment
  r.Uleb();  // data alignment (an SLEB128: only skipped)
  if (version == 1) {
    r.Fixed(1);
  } else {
    r.Uleb();
  }
  if (!r.ok() || aug[0] != 'z') return std::nullopt;
  r.Uleb();  // augmentation length
  for (const char* c = aug + 1; *c != 0 && r.ok(); ++c) {
    if (*c == 'R') return static_cast<uint8_t>(r.Fixed(1));
    if (*c == 'L') {
      r.Fixed(1);
    } else if (*c == 'P') {
      const std::optional<uint64_t> n = EncodedSize(r.Fixed(1));
      if (!n) return std::nullopt;
      r.Fixed(*n);
    } else if (*c != 'S' && *c != 'B') {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

UnwindTable::UnwindTable(const ElfFile& elf) : elf_(elf) {
  const Elf64_Phdr* hdr = nullptr;
  for (const Elf64_Phdr& ph : elf.program_headers()) {
    if (ph.p_type == PT_GNU_EH_FRAME) hdr = &ph;
  }
  if (hdr == nullptr) return;
  auto head = FileBytesAt(elf, hdr->p_vaddr, 4);
  if (!head || (*head)[0] != 1) return;
  const uint8_t ptr_enc = (*head)[1], count_enc = (*head)[2],
                table_enc = (*head)[3];
  const std::optional<uint64_t> ptr_size = EncodedSize(ptr_enc);
  if (ptr_enc == kOmit || !ptr_size || count_enc != kUdata4 ||
      table_enc != kDatarelSdata4) {
    return;
  }
  const uint64_t count_at = hdr->p_vaddr + 4 + *ptr_size;
  auto count_bytes = FileBytesAt(elf, count_at, 4);
  if (!count_bytes) return;
  uint32_t count;
  memcpy(&count, count_bytes->data(), 4);
  auto table = FileBytesAt(elf, count_at + 4, uint64_t{count} * 8);
  if (!table) return;
  entries_.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    int32_t rel[2];
    memcpy(rel, table->data() + 8 * uint64_t{i}, 8);
    entries_.emplace_back(hdr->p_vaddr + static_cast<int64_t>(rel[0]),
                          hdr->p_vaddr + static_cast<int64_t>(rel[1]));
  }
  std::sort(entries_.begin(), entries_.end());
}

std::optional<FunctionRange> UnwindTable::FunctionAt(uint64_t vaddr) const {
  auto after =
      std::upper_bound(entries_.begin(), entries_.end(), vaddr,
                       [](uint64_t v, const std::pair<uint64_t, uint64_t>& e) {
                         return v < e.first;
                       });
  if (after == entries_.begin()) return std::nullopt;
  const auto [start, fde] = *(after - 1);
  // The FDE: length, CIE pointer, pc_begin, pc_range (no 64-bit DWARF).
  auto fde_head = FileBytesAt(elf_, fde, 8);
  if (!fde_head) return std::nullopt;
  uint32_t fde_length, cie_pointer;
  memcpy(&fde_length, fde_head->data(), 4);
  memcpy(&cie_pointer, fde_head->data() + 4, 4);
  if (fde_length == 0xffffffff || cie_pointer == 0 || cie_pointer > fde + 4) {
    return std::nullopt;
  }
  const uint64_t cie = fde + 4 - cie_pointer;
  auto cie_length = FileBytesAt(elf_, cie, 4);
  if (!cie_length) return std::nullopt;
  uint32_t length;
  memcpy(&length, cie_length->data(), 4);
  auto cie_bytes = FileBytesAt(elf_, cie + 4, length);
  if (length == 0xffffffff || !cie_bytes) return std::nullopt;
  const std::optional<uint8_t> encoding = FdeEncoding(*cie_bytes);
  if (!encoding) return std::nullopt;
  const std::optional<uint64_t> size = EncodedSize(*encoding);
  if (!size) return std::nullopt;
  auto range_bytes = FileBytesAt(elf_, fde + 8 + *size, *size);
  if (!range_bytes) return std::nullopt;
  uint64_t range = 0;
  memcpy(&range, range_bytes->data(), *size);
  if (vaddr >= start + range || start + range < start) return std::nullopt;
  return FunctionRange{start, start + range};
}

}  // namespace mpkbox::internal
