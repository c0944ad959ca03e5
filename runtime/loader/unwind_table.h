// Where an object's functions lie, from its unwind table: the binary search
// table of .eh_frame_hdr (PT_GNU_EH_FRAME) and the FDEs it points to. Their
// bounds are instruction boundaries the compiler wrote down, from which the
// gadget rewriter disassembles (runtime/loader/code_rewrite.h).
#ifndef MPKBOX_RUNTIME_LOADER_UNWIND_TABLE_H_
#define MPKBOX_RUNTIME_LOADER_UNWIND_TABLE_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "runtime/loader/elf_file.h"

namespace mpkbox::internal {

struct FunctionRange {
  uint64_t start;  // vaddr of its first instruction
  uint64_t end;    // one past its last byte
};

class UnwindTable {
 public:
  // Reads the search table of `elf`, which must outlive the UnwindTable.
  // Without one, or with one this does not read (anything but the
  // DW_EH_PE_datarel|sdata4 table every linker writes), it knows no
  // function: the rewriter then refuses, as it cannot know where
  // instructions start.
  explicit UnwindTable(const ElfFile& elf);

  // The function the FDE with the greatest start <= `vaddr` describes, if
  // `vaddr` lies in it and the FDE reads.
  std::optional<FunctionRange> FunctionAt(uint64_t vaddr) const;

  // The FDEs the table lists, and the start of the i-th, in order.
  size_t size() const { return entries_.size(); }
  uint64_t start(size_t i) const { return entries_[i].first; }

 private:
  const ElfFile& elf_;
  std::vector<std::pair<uint64_t, uint64_t>> entries_;  // start, FDE vaddr
};

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_UNWIND_TABLE_H_
