// What the gadget rewriter adds to a Load (runtime/loader/code_rewrite.h),
// on Debian's own libraries: the byte scan every Load does, the rewrite
// where the scan finds something (libnettle: two sequences in one
// function), and, as the upper bound, Zydis decoding every function the
// unwind table lists, as if each held a sequence. Run directly (the
// command and the numbers: bench/RESULTS.md, "Gadget rewriting").
#include <benchmark/benchmark.h>
#include <elf.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "runtime/loader/code_rewrite.h"
#include "runtime/loader/code_scan.h"
#include "runtime/loader/elf_file.h"
#include "runtime/loader/unwind_table.h"

namespace mpkbox::internal {
namespace {

const char* const kLibraries[] = {
    "/usr/lib/x86_64-linux-gnu/libnettle.so.8",
    "/usr/lib/x86_64-linux-gnu/libxml2.so.2",
    "/usr/lib/x86_64-linux-gnu/libicui18n.so.72",
};

// A library's file, its ELF view and its executable segments.
struct Library {
  std::vector<uint8_t> image;
  std::optional<ElfFile> elf;  // over `image`
  std::vector<LoadSegment> text;
  size_t text_bytes = 0;
};

Library* Load(const char* path) {
  auto image = ReadFileImage(path);
  if (!image.ok()) return nullptr;
  auto* lib = new Library;
  lib->image = std::move(*image);
  auto elf = ElfFile::Read(lib->image);
  if (!elf.ok()) return nullptr;
  lib->elf.emplace(*elf);
  for (size_t i = 0; i < elf->program_headers().size(); ++i) {
    if (elf->program_headers()[i].p_type != PT_LOAD) continue;
    auto s = elf->Segment(i);
    if (s.ok() && s->executable) {
      lib->text.push_back(*s);
      lib->text_bytes += s->bytes.size();
    }
  }
  return lib;
}

Library& Get(int64_t index) {
  static Library* libs[std::size(kLibraries)] = {};
  if (libs[index] == nullptr) libs[index] = Load(kLibraries[index]);
  if (libs[index] == nullptr) {
    fprintf(stderr, "loader_bench: cannot read %s\n", kLibraries[index]);
    abort();
  }
  return *libs[index];
}

void Label(benchmark::State& state, const Library& lib) {
  state.SetLabel(kLibraries[state.range(0)]);
  state.SetBytesProcessed(state.iterations() * lib.text_bytes);
}

// The scan every Load does: the baseline.
void BM_Scan(benchmark::State& state) {
  Library& lib = Get(state.range(0));
  for (auto _ : state) {
    for (const LoadSegment& s : lib.text) {
      benchmark::DoNotOptimize(ScanSegment(s));
    }
  }
  Label(state, lib);
}
BENCHMARK(BM_Scan)->DenseRange(0, std::size(kLibraries) - 1);

// What PlanSegments does: the scan, and where it finds something the
// unwind table, the disassembly of the functions holding the sequences,
// the rewrite and the rescan.
void BM_ScanAndRewrite(benchmark::State& state) {
  Library& lib = Get(state.range(0));
  for (auto _ : state) {
    for (const LoadSegment& s : lib.text) {
      if (ScanSegment(s).empty()) continue;
      SegmentRewrite rewrite = RewriteGadgets(s, UnwindTable(*lib.elf));
      LoadSegment rewritten = s;
      rewritten.bytes = rewrite.code;
      benchmark::DoNotOptimize(ScanSegment(rewritten));
    }
  }
  Label(state, lib);
}
BENCHMARK(BM_ScanAndRewrite)->DenseRange(0, std::size(kLibraries) - 1);

// The upper bound: every function the unwind table lists decoded.
void BM_DecodeEveryFunction(benchmark::State& state) {
  Library& lib = Get(state.range(0));
  const UnwindTable unwind(*lib.elf);
  size_t tiled = 0;
  for (auto _ : state) {
    for (const LoadSegment& s : lib.text) {
      tiled = DecodeEveryFunction(s, unwind);
    }
  }
  Label(state, lib);
  state.counters["functions"] = unwind.size();
  state.counters["tiled"] = tiled;
}
BENCHMARK(BM_DecodeEveryFunction)->DenseRange(0, std::size(kLibraries) - 1);

}  // namespace
}  // namespace mpkbox::internal

BENCHMARK_MAIN();
