#include "runtime/gadget_guard.h"

#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <Zydis/Zydis.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "runtime/eager_binding.h"
#include "runtime/loader/code_scan.h"
#include "runtime/signal_frame.h"
#include "runtime/signals.h"
#include "runtime/testing_switches.h"
#include "runtime/thread_runtime.h"
#include "trampolines/trampolines.h"


extern "C" {
uint64_t mpkbox_guard_epoch = 0;
}

namespace mpkbox::internal {
namespace {

struct Entry {
  uintptr_t address;
  char what[96];  // "WRPKRU in libc.so.6+0x109352"
};

// A real privileged instruction with int3 over its escape byte.
struct Patch {
  uintptr_t site;   // the 0x0f escape byte, now int3
  uintptr_t next;   // the byte after the instruction: where host code resumes
  uint8_t original;
  int prot;  // of its mapping, given back after each write
  ZydisMnemonic mnemonic;
  // XRSTOR's memory operand, as ucontext gregs indices (-1: none, kRip).
  int base = -1, index = -1;
  uint8_t scale = 0;
  int64_t disp = 0;
  char what[96];
};
constexpr int kRip = -2;
constexpr int kMaxPatches = 512;

// Read by the signal handler without a lock: entries and patches are only
// appended, and each count is published after the record is written.
struct Guards {
  std::atomic<bool> enabled{false};
  std::atomic<int> count{0};
  Entry entries[kMaxGuardedEntries];
  std::atomic<int> patch_count{0};
  Patch patches[kMaxPatches];
  std::atomic<uint64_t> emulated{0};
  absl::Mutex mu;  // scans
  std::string error ABSL_GUARDED_BY(mu);  // too many entry points
};
Guards& GetGuards() {
  static Guards* g = new Guards;
  return *g;
}

bool IsPrefix(uint8_t b) {
  // REX and the prefixes that do not make WRPKRU or XRSTOR undefined: a
  // jump to any of them still runs the instruction.
  return (b & 0xf0) == 0x40 || b == 0x26 || b == 0x2e || b == 0x36 ||
         b == 0x3e || b == 0x64 || b == 0x65 || b == 0x67;
}

struct Mapping {
  uintptr_t lo, hi;
  int prot;
};

struct Found {
  uintptr_t address;  // the instruction's first byte
  std::string what;
  const char* name;   // "WRPKRU", ...
  Mapping mapping;
};

// Every privileged instruction in readable executable mappings, outside
// mpkbox's trampolines.
std::vector<Found> ScanMappings(std::vector<std::string>* unreadable) {
  std::vector<Found> found;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, path;
    in >> range >> perms >> offset >> dev >> inode;
    std::getline(in >> std::ws, path);
    if (perms.size() < 3 || perms[2] != 'x') continue;
    if (path == "[vsyscall]") continue;  // emulated, never executed
    const size_t dash = range.find('-');
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (perms[0] != 'r') {
      unreadable->push_back(line);
      continue;
    }
    const Mapping mapping{
        lo, hi, PROT_READ | PROT_EXEC | (perms[1] == 'w' ? PROT_WRITE : 0)};
    const auto* bytes = reinterpret_cast<const uint8_t*>(lo);
    const std::string name =
        path.empty() ? absl::StrFormat("[anonymous %x]", lo)
                     : path.substr(path.rfind('/') + 1);
    const uintptr_t file_base = lo - std::stoull(offset, nullptr, 16);
    for (const PrivilegedInstruction& p :
         FindPrivilegedInstructions(absl::MakeConstSpan(bytes, hi - lo))) {
      const uintptr_t at = lo + p.offset;
      if (InTrampolines(at)) continue;
      found.push_back({at,
                       absl::StrFormat("%s in %s+0x%x", p.name, name,
                                       at - file_base),
                       p.name, mapping});
    }
  }
  return found;
}

// The instruction's entry points: its first byte, and every prefix byte
// before it (a jump there still runs it).
std::vector<uintptr_t> EntryPoints(const Found& f) {
  std::vector<uintptr_t> points = {f.address};
  const auto* bytes = reinterpret_cast<const uint8_t*>(f.mapping.lo);
  for (uintptr_t q = f.address;
       q > f.mapping.lo && f.address - q < 14 &&
       IsPrefix(bytes[q - 1 - f.mapping.lo]);
       --q) {
    points.push_back(q - 1);
  }
  return points;
}

int GregOf(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_NONE: return -1;
    case ZYDIS_REGISTER_RIP: return kRip;
    case ZYDIS_REGISTER_RAX: return REG_RAX;
    case ZYDIS_REGISTER_RCX: return REG_RCX;
    case ZYDIS_REGISTER_RDX: return REG_RDX;
    case ZYDIS_REGISTER_RBX: return REG_RBX;
    case ZYDIS_REGISTER_RSP: return REG_RSP;
    case ZYDIS_REGISTER_RBP: return REG_RBP;
    case ZYDIS_REGISTER_RSI: return REG_RSI;
    case ZYDIS_REGISTER_RDI: return REG_RDI;
    case ZYDIS_REGISTER_R8: return REG_R8;
    case ZYDIS_REGISTER_R9: return REG_R9;
    case ZYDIS_REGISTER_R10: return REG_R10;
    case ZYDIS_REGISTER_R11: return REG_R11;
    case ZYDIS_REGISTER_R12: return REG_R12;
    case ZYDIS_REGISTER_R13: return REG_R13;
    case ZYDIS_REGISTER_R14: return REG_R14;
    case ZYDIS_REGISTER_R15: return REG_R15;
    default: return -3;  // not a 64-bit general register: not emulated
  }
}

// The start of the function that holds `address`, from its object's
// .eh_frame_hdr search table (what unwinders use: every function of
// Debian's libraries has an FDE, hand-written assembly included); 0 if there
// is none. dladdr's symbol is the nearest exported one, which may lie far
// before a local function (ld.so's resolver): starting there made Init
// about 30% slower (bench/RESULTS.md).
uintptr_t FunctionStart(uintptr_t address) {
  dl_find_object object;
  if (_dl_find_object(reinterpret_cast<void*>(address), &object) != 0 ||
      object.dlfo_eh_frame == nullptr) {
    return 0;
  }
  const auto* hdr = static_cast<const uint8_t*>(object.dlfo_eh_frame);
  // Version 1, a 4-byte eh_frame_ptr, fde_count udata4, the table as
  // datarel sdata4 pairs: what GNU ld and lld write.
  if (hdr[0] != 1 || (hdr[1] & 0x0f) != 0x0b || hdr[2] != 0x03 ||
      hdr[3] != 0x3b) {
    return 0;
  }
  uint32_t count;
  memcpy(&count, hdr + 8, sizeof(count));
  const auto* table = hdr + 12;  // (initial location, FDE) pairs, sorted
  auto location = [&](uint32_t i) {
    int32_t rel;
    memcpy(&rel, table + 8 * size_t{i}, sizeof(rel));
    return reinterpret_cast<uintptr_t>(hdr) + rel;
  };
  uint32_t lo = 0, hi = count;  // the last entry <= address
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (location(mid) <= address) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo == 0 ? 0 : location(lo - 1);
}

// Whether `f` is a real instruction of the host's code, as ERIM requires
// before overwriting it: a linear disassembly from the start of its
// function (else the nearest symbol before it, else the mapping's start)
// decodes exactly this instruction there. If so,
// fills `patch` (all but `what` and `original`). A sequence inside other
// instructions (an immediate, a displacement, two instructions' bytes) fails
// and keeps its breakpoints; so do WRFSBASE/WRGSBASE, which a host may run.
bool RealInstruction(const Found& f, Patch* patch) {
  static const ZydisMnemonic kPatchable[] = {
      ZYDIS_MNEMONIC_WRPKRU, ZYDIS_MNEMONIC_XRSTOR, ZYDIS_MNEMONIC_XRSTOR64,
      ZYDIS_MNEMONIC_XRSTORS, ZYDIS_MNEMONIC_XRSTORS64};
  uintptr_t from = FunctionStart(f.address);
  Dl_info info;
  if ((from < f.mapping.lo || from > f.address) &&
      dladdr(reinterpret_cast<void*>(f.address), &info) != 0 &&
      info.dli_saddr != nullptr) {
    from = reinterpret_cast<uintptr_t>(info.dli_saddr);
  }
  if (from < f.mapping.lo || from > f.address) from = f.mapping.lo;
  ZydisDecoder decoder;
  ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  // The instruction the sweep decodes over f.address (possibly starting at
  // a prefix before it).
  ZydisDecoderContext context;
  uintptr_t at = from;
  bool decoded = false;
  for (;;) {
    decoded = ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(
        &decoder, &context, reinterpret_cast<const void*>(at),
        std::min<size_t>(f.mapping.hi - at, ZYDIS_MAX_INSTRUCTION_LENGTH),
        &insn));
    const size_t length = decoded ? insn.length : 1;  // as objdump does
    if (at + length > f.address) break;
    at += length;
  }
  if (!decoded || std::find(std::begin(kPatchable), std::end(kPatchable),
                            insn.mnemonic) == std::end(kPatchable) ||
      !ZYAN_SUCCESS(ZydisDecoderDecodeOperands(&decoder, &context, &insn, ops,
                                               insn.operand_count))) {
    return false;  // part of another instruction
  }
  {
    const uintptr_t start = at;
    const auto* bytes = reinterpret_cast<const uint8_t*>(start);
    uintptr_t escape = 0;
    for (size_t i = 0; i < insn.length; ++i) {
      if (bytes[i] == 0x0f) {
        escape = start + i;
        break;
      }
    }
    // The escape the scanner found: f.address, or after an XRSTOR64's REX.W.
    if (escape != f.address && escape != f.address + 1) return false;
    patch->site = escape;
    patch->next = start + insn.length;
    patch->mnemonic = insn.mnemonic;
    if (insn.mnemonic != ZYDIS_MNEMONIC_WRPKRU) {
      const ZydisDecodedOperand* mem = nullptr;
      for (int i = 0; i < insn.operand_count; ++i) {
        if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY) mem = &ops[i];
      }
      if (mem == nullptr) return false;
      patch->base = GregOf(mem->mem.base);
      patch->index = GregOf(mem->mem.index);
      patch->scale = mem->mem.scale;
      patch->disp = mem->mem.disp.value;
      // An FS/GS-relative or 32-bit address could be emulated too, but no
      // host code has one: breakpoints, rather than untested emulation.
      const bool plain = insn.address_width == 64 && patch->base != -3 &&
                         patch->index != -3 &&
                         (mem->mem.segment == ZYDIS_REGISTER_DS ||
                          mem->mem.segment == ZYDIS_REGISTER_SS ||
                          mem->mem.segment == ZYDIS_REGISTER_NONE);
      if (!plain) return false;
    }
    return true;
  }
}

// Writes one byte of code in a private copy of its page. RWX for the
// moment of the write: other threads may be running code on the page.
absl::Status WriteCodeByte(uintptr_t at, uint8_t value, int prot) {
  void* page = reinterpret_cast<void*>(at & ~uintptr_t{MPKBOX_PAGE_SIZE - 1});
  if (mprotect(page, MPKBOX_PAGE_SIZE, prot | PROT_WRITE) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "cannot make the code page at %p writable to disarm the privileged "
        "instruction at 0x%x: %s",
        page, at, strerror(errno)));
  }
  __atomic_store_n(reinterpret_cast<uint8_t*>(at), value, __ATOMIC_SEQ_CST);
  if (mprotect(page, MPKBOX_PAGE_SIZE, prot) != 0) {
    return absl::InternalError(absl::StrFormat(
        "cannot restore the protection of the code page at %p: %s", page,
        strerror(errno)));
  }
  return absl::OkStatus();
}

bool IsKnownEntry(const Guards& g, uintptr_t address) {
  for (int i = 0; i < g.count.load(); ++i) {
    if (g.entries[i].address == address) return true;
  }
  return false;
}

}  // namespace

absl::Status ScanProcessForGadgets() {
  Guards& g = GetGuards();
  absl::MutexLock lock(&g.mu);
  std::vector<std::string> unreadable;
  std::vector<Found> found = ScanMappings(&unreadable);
  g.enabled.store(true);
  std::vector<Entry> fresh;  // entry points that need breakpoints
  for (const Found& f : found) {
    Patch patch;
    const int n = g.patch_count.load();
    if (!IsKnownEntry(g, f.address) && n < kMaxPatches &&
        RealInstruction(f, &patch)) {
      patch.original = *reinterpret_cast<const uint8_t*>(patch.site);
      patch.prot = f.mapping.prot;
      snprintf(patch.what, sizeof(patch.what), "%s", f.what.c_str());
      // Published before the int3 lands: a thread that hits it finds it.
      g.patches[n] = patch;
      g.patch_count.store(n + 1, std::memory_order_release);
      if (WriteCodeByte(patch.site, 0xcc, patch.prot).ok()) continue;
      g.patches[n].site = 0;  // not patched after all: breakpoints instead
    }
    for (uintptr_t e : EntryPoints(f)) {
      if (IsKnownEntry(g, e)) continue;
      Entry& entry = fresh.emplace_back();
      entry.address = e;
      snprintf(entry.what, sizeof(entry.what), "%s%s", f.what.c_str(),
               e == f.address ? "" : " (through a prefix byte)");
    }
  }
  if (!unreadable.empty()) {
    g.error = absl::StrCat(
        "executable mappings that cannot be read for privileged "
        "instructions: ",
        absl::StrJoin(unreadable, "; "));
  } else if (g.count.load() + static_cast<int>(fresh.size()) >
             kMaxGuardedEntries) {
    std::vector<std::string> all;
    for (int i = 0; i < g.count.load(); ++i) all.push_back(g.entries[i].what);
    for (const Entry& e : fresh) all.push_back(e.what);
    g.error = absl::StrFormat(
        "%d entry points of WRPKRU/XRSTOR outside mpkbox's gates that are "
        "not whole instructions mpkbox can replace with a trap (they lie "
        "inside other instructions), but only %d hardware breakpoints per "
        "thread to guard them (strict mode): %s",
        all.size(), kMaxGuardedEntries, absl::StrJoin(all, ", "));
  }
  if (!g.error.empty()) {
    // Every thread's next Call takes the slow path, which refuses.
    __atomic_add_fetch(&mpkbox_guard_epoch, 1, __ATOMIC_RELEASE);
    return absl::FailedPreconditionError(g.error);
  }
  for (const Entry& e : fresh) {
    g.entries[g.count.load()] = e;
    g.count.fetch_add(1, std::memory_order_release);
  }
  if (!fresh.empty() || mpkbox_guard_epoch == 0) {
    __atomic_add_fetch(&mpkbox_guard_epoch, 1, __ATOMIC_RELEASE);
  }
  return absl::OkStatus();
}

bool GadgetGuardsEnabled() { return GetGuards().enabled.load(); }

absl::Status GadgetGuardStatus() {
  Guards& g = GetGuards();
  absl::MutexLock lock(&g.mu);
  return g.error.empty() ? absl::OkStatus()
                         : absl::FailedPreconditionError(g.error);
}

absl::Status GuardThisThread(ThreadBlock* tb) {
  Guards& g = GetGuards();
  const uint64_t epoch = __atomic_load_n(&mpkbox_guard_epoch, __ATOMIC_ACQUIRE);
  if (!g.enabled.load()) {
    tb->guard_epoch = epoch;
    return absl::OkStatus();
  }
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  const int count = g.count.load(std::memory_order_acquire);
  for (int i = rt.guard_count; i < count; ++i) {
    perf_event_attr attr{};
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.size = sizeof(attr);
    attr.bp_type = HW_BREAKPOINT_X;
    attr.bp_addr = g.entries[i].address;
    attr.bp_len = sizeof(long);
    attr.sample_period = 1;
    attr.sigtrap = 1;  // SIGTRAP (TRAP_PERF) to this thread, before it runs
    attr.remove_on_exec = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.sig_data = g.entries[i].address;
    const int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1,
                                            -1, PERF_FLAG_FD_CLOEXEC));
    if (fd < 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "cannot guard %s with a hardware breakpoint: perf_event_open: %s "
          "(strict mode needs it; see kernel.perf_event_paranoid)",
          g.entries[i].what, strerror(errno)));
    }
    rt.guard_fds[rt.guard_count++] = fd;
  }
  tb->guard_epoch = epoch;
  return absl::OkStatus();
}

void UnguardThisThread(ThreadBlock* tb) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  for (int i = 0; i < rt.guard_count; ++i) close(rt.guard_fds[i]);
  rt.guard_count = 0;
  tb->guard_epoch = 0;
}

namespace {
const Patch* FindPatch(uintptr_t site) {
  Guards& g = GetGuards();
  const int n = g.patch_count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g.patches[i].site == site && site != 0) return &g.patches[i];
  }
  return nullptr;
}
}  // namespace

#ifdef MPKBOX_TESTING_SWITCHES
void DisableGadgetGuardsForTesting() {
  Guards& g = GetGuards();
  g.enabled.store(false);
  // The patched instructions run again, for anyone: the attack's control.
  const int n = g.patch_count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g.patches[i].site == 0) continue;
    WriteCodeByte(g.patches[i].site, g.patches[i].original, g.patches[i].prot)
        .IgnoreError();
  }
  if (ThreadBlock* tb = CurrentThreadBlock()) {
    UnguardThisThread(tb);
    tb->guard_epoch = __atomic_load_n(&mpkbox_guard_epoch, __ATOMIC_ACQUIRE);
  }
}
#endif

bool ThreadGuardsCurrent(const ThreadBlock* tb) {
  return tb->guard_epoch == __atomic_load_n(&mpkbox_guard_epoch,
                                            __ATOMIC_ACQUIRE);
}

const char* GuardedEntryAt(uintptr_t address) {
  Guards& g = GetGuards();
  const int count = g.count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    if (g.entries[i].address == address) return g.entries[i].what;
  }
  const Patch* p = FindPatch(address);
  return p != nullptr ? p->what : nullptr;
}

uintptr_t PatchedSiteAt(uintptr_t int3_address) {
  const Patch* p = FindPatch(int3_address);
  return p != nullptr ? p->site : 0;
}

namespace {
constexpr int kPkruFeature = 9;
constexpr uint64_t kPkruComponent = uint64_t{1} << kPkruFeature;

// The PKRU an XRSTOR would load from `area` (standard or compacted
// format): 0, its init value, unless the area's header says it holds one.
uint32_t AreaPkru(const uint8_t* area) {
  uint64_t xstate_bv, xcomp_bv;
  memcpy(&xstate_bv, area + 512, sizeof(xstate_bv));
  memcpy(&xcomp_bv, area + 520, sizeof(xcomp_bv));
  if ((xstate_bv & kPkruComponent) == 0) return 0;
  unsigned size, offset, flags, edx;
  __cpuid_count(0xd, kPkruFeature, size, offset, flags, edx);
  if ((xcomp_bv >> 63) != 0) {  // compacted: the components it holds, packed
    offset = 576;
    for (int i = 2; i <= kPkruFeature; ++i) {
      if ((xcomp_bv & (uint64_t{1} << i)) == 0) continue;
      unsigned component_size, ebx;
      __cpuid_count(0xd, i, component_size, ebx, flags, edx);
      if ((flags & 2) != 0) offset = (offset + 63) & ~63u;  // 64-aligned
      if (i < kPkruFeature) offset += component_size;
    }
  }
  uint32_t pkru;
  memcpy(&pkru, area + offset, sizeof(pkru));
  return pkru;
}
}  // namespace

bool EmulatePatchedInstruction(uintptr_t site, ucontext_t* uc) {
  const Patch* p = FindPatch(site);
  if (p == nullptr) return false;
  greg_t* r = uc->uc_mcontext.gregs;
  const auto eax = static_cast<uint32_t>(r[REG_RAX]);
  const auto ecx = static_cast<uint32_t>(r[REG_RCX]);
  const auto edx = static_cast<uint32_t>(r[REG_RDX]);
  if (p->mnemonic == ZYDIS_MNEMONIC_WRPKRU) {
    if (ecx != 0 || edx != 0) return false;  // #GP on the real CPU
    SetFramePkru(uc, eax);
  } else if (p->mnemonic == ZYDIS_MNEMONIC_XRSTOR ||
             p->mnemonic == ZYDIS_MNEMONIC_XRSTOR64) {
    const uint64_t mask = eax | (uint64_t{edx} << 32);
    uint64_t frame_mask = 0;
    void* frame = FrameXsave(uc, &frame_mask);
    if (frame == nullptr) return false;
    uintptr_t area = static_cast<uintptr_t>(p->disp);
    if (p->base == kRip) area += p->next;
    if (p->base >= 0) area += static_cast<uintptr_t>(r[p->base]);
    if (p->index >= 0) area += static_cast<uintptr_t>(r[p->index]) * p->scale;
    mpkbox_xrstor_into_frame(frame, frame_mask,
                             reinterpret_cast<const void*>(area), mask,
                             p->mnemonic == ZYDIS_MNEMONIC_XRSTOR64);
    // Host code may load PKRU this way (a user-level context switch with
    // the full mask): the frame gets what the area holds.
    if ((mask & frame_mask & kPkruComponent) != 0) {
      SetFramePkru(uc, AreaPkru(reinterpret_cast<const uint8_t*>(area)));
    }
  } else {
    return false;  // XRSTORS: #GP outside ring 0
  }
  r[REG_RIP] = static_cast<greg_t>(p->next);
  GetGuards().emulated.fetch_add(1, std::memory_order_relaxed);
  return true;
}

GadgetGuardCounts GadgetGuardCountsNow() {
  Guards& g = GetGuards();
  GadgetGuardCounts c;
  const int n = g.patch_count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) c.patched += g.patches[i].site != 0;
  c.breakpoints = g.count.load(std::memory_order_acquire);
  c.emulated = g.emulated.load(std::memory_order_relaxed);
  return c;
}

}  // namespace mpkbox::internal
