// mpkbox-scan FILE...: lists every WRPKRU, XRSTOR(S)(64) and WR{FS,GS}BASE
// in the executable segments of ELF files, at any byte offset, as
// Compartment::Load would refuse them.
//
// Exit status: 0 if no file has any, 1 if some file has, 2 if a file could
// not be scanned (and usage errors).
#include <cstdio>

#include "runtime/loader/code_scan.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE...\n", argv[0]);
    return 2;
  }
  int status = 0;
  for (int i = 1; i < argc; ++i) {
    auto findings = mpkbox::internal::ScanElfFile(argv[i]);
    if (!findings.ok()) {
      fprintf(stderr, "%s: %s\n", argv[0],
              std::string(findings.status().message()).c_str());
      status = 2;
      continue;
    }
    for (const auto& f : *findings) {
      printf("%s: file offset 0x%llx (vaddr 0x%llx): %s\n", argv[i],
             static_cast<unsigned long long>(f.file_offset),
             static_cast<unsigned long long>(f.vaddr), f.instruction.c_str());
    }
    if (findings->empty()) {
      printf("%s: clean\n", argv[i]);
    } else if (status == 0) {
      status = 1;
    }
  }
  return status;
}
