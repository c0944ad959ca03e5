// mpkbox-scan FILE...: lists every WRPKRU, XRSTOR(S)(64) and WR{FS,GS}BASE
// in the executable segments of ELF files, at any byte offset, and what
// Compartment::Load does with each: rewrites it (an accidental sequence
// across or inside other instructions, and how), or refuses it (a real
// instruction, or one no rewrite is provably safe for, and why).
//
// Exit status: 0 if Load accepts every file (clean, or rewritable), 1 if it
// refuses some file for a sequence, 2 if a file could not be scanned (and
// usage errors).
#include <cstdio>
#include <string>

#include "runtime/loader/code_scan.h"

namespace {

const char* KindName(mpkbox::internal::GadgetVerdict::Kind kind) {
  using Kind = mpkbox::internal::GadgetVerdict::Kind;
  switch (kind) {
    case Kind::kRewritten:
      return "rewritable";
    case Kind::kReal:
      return "real";
    case Kind::kRefused:
      return "not rewritable";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE...\n", argv[0]);
    return 2;
  }
  int status = 0;
  for (int i = 1; i < argc; ++i) {
    auto verdicts = mpkbox::internal::ScanElfFile(argv[i]);
    if (!verdicts.ok()) {
      fprintf(stderr, "%s: %s\n", argv[0],
              std::string(verdicts.status().message()).c_str());
      status = 2;
      continue;
    }
    bool refused = false;
    for (const auto& v : *verdicts) {
      printf("%s: file offset 0x%llx (vaddr 0x%llx): %s [%s]: %s: %s\n",
             argv[i], static_cast<unsigned long long>(v.file_offset),
             static_cast<unsigned long long>(v.vaddr), v.instruction.c_str(),
             mpkbox::internal::HexBytes(v.bytes).c_str(), KindName(v.kind),
             v.detail.c_str());
      refused = refused ||
                v.kind != mpkbox::internal::GadgetVerdict::Kind::kRewritten;
    }
    if (verdicts->empty()) {
      printf("%s: clean\n", argv[i]);
    } else if (!refused) {
      printf("%s: loads after rewriting %zu sequence(s)\n", argv[i],
             verdicts->size());
    } else if (status == 0) {
      status = 1;
    }
  }
  return status;
}
