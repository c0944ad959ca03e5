#include "mpkbox/compartment.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "allocator/compartment_heap.h"
#include "mpkbox/runtime.h"
#include "runtime/call_timer.h"
#include "runtime/callback_table.h"
#include "runtime/compartment_libc/libc_state.h"
#include "runtime/fault_report.h"
#include "runtime/gadget_guard.h"
#include "runtime/keys/host_ranges.h"
#include "runtime/keys/pku.h"
#include "runtime/loader/elf_loader.h"
#include "runtime/runtime_state.h"
#include "runtime/signals.h"
#include "runtime/slot_registry.h"
#include "runtime/testing_switches.h"
#include "runtime/thread_block.h"

namespace mpkbox {
namespace {

// Below this a compartment cannot even run the gate's callee frame plus a
// libc call; the number is a floor, not a recommendation.
constexpr size_t kMinStackBytes = 16 << 10;

std::atomic<uint64_t> g_unnamed_count{0};

}  // namespace

absl::StatusOr<std::unique_ptr<Compartment>> Compartment::Create(
    CompartmentOptions options) {
  if (absl::Status s = Runtime::Init(); !s.ok()) return s;
  internal::OpenAllKeysInThisThread();
  if (options.name.empty()) {
    options.name = absl::StrCat("compartment-", ++g_unnamed_count);
  }
  if (absl::Status s = options.syscalls.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compartment '%s': %s", options.name, s.message()));
  }
  if (options.stack_bytes < kMinStackBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compartment '%s': stack_bytes %u is below the minimum of %u",
        options.name, options.stack_bytes, kMinStackBytes));
  }
  // No hardware key yet: the key cache gives it one at its first Call
  // (slot_registry.h). Until then its memory waits on the trusted key.
  std::unique_ptr<Compartment> c(new Compartment(std::move(options)));
  absl::StatusOr<internal::SlotGrant> grant = internal::AcquireSlot(
      c->options_.name, c->options_.ambient, &c->generation_,
      &c->referenced_);
  if (!grant.ok()) {
    c->released_ = true;
    return grant.status();
  }
  absl::StatusOr<std::unique_ptr<internal::CompartmentHeap>> heap =
      internal::CompartmentHeap::Create(grant->slot, grant->domain,
                                        internal::Keys().trusted,
                                        c->options_.heap_limit_bytes,
                                        c->options_.name);
  if (!heap.ok()) {
    internal::ReleaseSlot(grant->slot);
    c->released_ = true;
    return heap.status();
  }
  internal::SetHeapOfSlot(grant->slot, heap->get());
  c->heap_ = *std::move(heap);
  c->slot_ = grant->slot;
  c->domain_ = grant->domain;
  c->libc_ = std::make_unique<internal::LibcState>(c->domain_, c->options_);
  c->libc_->call_inside = [box = c.get()](void (*fn)()) {
    return box->Call(fn);
  };
  internal::SetLibcStateOfSlot(c->slot_, c->libc_.get());
  internal::TakeFreeKey(c->slot_);
  return c;
}

Compartment::Compartment(CompartmentOptions options)
    : options_(std::move(options)),
      timed_(options_.call_timeout != absl::InfiniteDuration()) {}

Compartment::~Compartment() {
  if (released_) return;  // Create failed after taking the slot
  internal::OpenAllKeysInThisThread();
  {  // no exiting thread runs key destructors inside from here on
    absl::MutexLock exit_lock(&internal::LibcExitMutex(slot_));
    libc_->retired.store(true);
  }
  // Every page tagged with the key goes before the key: pkey_alloc would
  // hand it out again with those pages still readable (docs/DESIGN.md 5b).
  if (loader_ != nullptr && generation_.load() != 0) loader_->RunFinalizers();
  internal::PinSlot(slot_);  // the key cache leaves its memory alone now
  heap_->BeginDrop();
  internal::DropSlotContexts(slot_);
  {
    absl::MutexLock exit_lock(&internal::LibcExitMutex(slot_));
    internal::SetLibcStateOfSlot(slot_, nullptr);
    libc_.reset();  // no thread is inside: its contexts are gone
  }
  internal::SetHeapOfSlot(slot_, nullptr);
  heap_.reset();  // before the slot, whose window it releases, is free
  internal::ReleaseSlot(slot_);  // and its key
}

int Compartment::pkey() const { return internal::SlotKey(slot_); }

uint32_t Compartment::pkru() const { return internal::SlotPkru(slot_); }

absl::StatusOr<internal::ThreadBlock*> Compartment::BeginCall() {
  const uint64_t generation = generation_.load(std::memory_order_relaxed);
  if (generation == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "compartment '%s' refuses calls until Reset(); its last call failed: "
        "%s",
        name(), last_fault_ != nullptr ? last_fault_->what : "unknown"));
  }
  absl::StatusOr<internal::ThreadBlock*> tb = internal::EnsureThreadBlock();
  if (!tb.ok()) {
    return absl::Status(tb.status().code(),
                        absl::StrFormat("compartment '%s': %s", name(),
                                        tb.status().message()));
  }
  if (((*tb)->depth >= internal::kHandlerDepthBias ||
       (*tb)->signal_nesting != 0) &&
      !internal::RecoverFromAbandonedHandler(*tb)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "compartment '%s': calls from a signal handler are not supported",
        name()));
  }
  if (!internal::ThreadGuardsCurrent(*tb)) {
    // A library loaded since brought privileged instructions of its own.
    absl::Status s = internal::GadgetGuardStatus();
    if (s.ok()) s = internal::GuardThisThread(*tb);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrFormat("compartment '%s': %s",
                                                    name(), s.message()));
    }
  }
  if ((*tb)->depth > internal::kMaxCallDepth) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "compartment '%s': calls nested %u deep through callbacks; the limit "
        "is %u",
        name(), (*tb)->depth / 2 + 1, internal::kMaxCallDepth / 2 + 1));
  }
  if ((*tb)->contexts[slot_].generation != generation) {
    internal::CallContext* ctx = &(*tb)->contexts[slot_];
    if (ctx->generation == 0) {
      // A handler installed behind mpkbox's back would kill the process.
      // Looked for at a thread's first call (a context without a stack:
      // rare enough for one rt_sigaction per signal, 0.3 us each), and at
      // its first since a Reset (which keeps the stack) at most once a
      // millisecond: Reset is the per-request path.
      absl::Status s = ctx->stack_base == 0
                           ? internal::CheckSignalDispositions()
                           : internal::CheckSignalDispositionsIfDue();
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrFormat("compartment '%s': %s",
                                                      name(), s.message()));
      }
    }
    // Named before the key cache runs: from here until the call returns no
    // eviction takes this compartment's key.
    (*tb)->pending_ctx = ctx;
    internal::DomainSpec spec{slot_, domain_, options_.stack_bytes,
                              options_.name, &options_.syscalls};
    if (absl::Status s = internal::EnterSlot(*tb, spec); !s.ok()) {
      (*tb)->pending_ctx = nullptr;
      return s;
    }
  }
  if (timed_) {
    if (absl::Status s =
            internal::BeginTimedCall(*tb, options_.call_timeout);
        !s.ok()) {
      (*tb)->pending_ctx = nullptr;
      return absl::Status(s.code(), absl::StrFormat("compartment '%s': %s",
                                                    name(), s.message()));
    }
  }
  return *tb;
}

absl::Status Compartment::EndCall(internal::ThreadBlock* tb, bool timed) {
  if (timed) internal::EndTimedCall(tb);
  if (tb->fault == 0) return absl::OkStatus();
  tb->fault = 0;
  auto report = std::make_unique<FaultReport>();
  internal::LoadedCodeNamer loaded;
  if (loader_ != nullptr) {
    loaded = [this](uintptr_t ip) { return loader_->NameOf(ip); };
  }
  absl::Status status = internal::BuildFaultReport(
      tb->fault_info, name(), options_.call_timeout, report.get(), loaded);
  last_fault_ = std::move(report);
  generation_.store(0, std::memory_order_relaxed);  // refuse until Reset
  return status;
}

absl::StatusOr<int> Compartment::AddCallback(void* host_fn, int returns,
                                             void* target) {
  if (host_fn == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compartment '%s': RegisterCallback of a null function", name()));
  }
  return internal::AddCallbackSlot(domain_, host_fn, returns, name(), target);
}

absl::Status Compartment::HostPointerArgument(int index,
                                              uintptr_t address) const {
  return absl::InvalidArgumentError(absl::StrFormat(
      "compartment '%s': argument %d (0x%x) points into the %s, which "
      "compartments cannot read; pass compartment memory from Allocate",
      name(), index + 1, address,
      internal::HostMemoryKindName(internal::HostMemoryKindOf(address))));
}

internal::ElfLoader& Compartment::loader() {
  if (loader_ == nullptr) {
    internal::ElfLoader::Target target{
        options_.name, heap_.get(), [this](uintptr_t fn) {
          // glibc calls constructors with (argc, argv, envp): none here.
          using Init = void (*)(int, char**, char**);
          return Call(reinterpret_cast<Init>(fn), 0, nullptr, nullptr);
        },
        [this](uintptr_t fn) -> absl::StatusOr<uintptr_t> {
          // x86-64 resolvers take no arguments (glibc's dl-irel.h).
          using Resolver = uintptr_t (*)();
          absl::StatusOr<Tainted<uintptr_t>> r =
              Call(reinterpret_cast<Resolver>(fn));
          if (!r.ok()) return r.status();
          return r->UnverifiedValue("the loader checks it is loaded code");
        }};
    loader_ = std::make_unique<internal::ElfLoader>(std::move(target));
  }
  return *loader_;
}

absl::Status Compartment::Load(absl::string_view path) {
  internal::OpenAllKeysInThisThread();
  return loader().Load(path);
}

absl::StatusOr<void*> Compartment::LookupSymbol(absl::string_view symbol) {
  absl::StatusOr<uintptr_t> p = loader().Lookup(symbol);
  if (!p.ok()) return p.status();
  return reinterpret_cast<void*>(*p);
}

void Compartment::ExposeStub(absl::string_view symbol, uintptr_t stub) {
  loader().Expose(symbol, stub);
}

absl::StatusOr<void*> Compartment::Allocate(size_t bytes, size_t alignment) {
  internal::OpenAllKeysInThisThread();
  return heap_->Allocate(bytes, alignment);
}

void Compartment::Free(void* p) { TryFree(p).IgnoreError(); }

absl::Status Compartment::TryFree(void* p) {
  if (p == nullptr) return absl::OkStatus();
  internal::OpenAllKeysInThisThread();
  if (heap_->Free(p)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "compartment '%s': Free(%p): not a live allocation of its heap; "
      "ignored",
      name(), p));
}

bool Compartment::Contains(const void* p, size_t bytes) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return heap_->Contains(a, bytes) ||
         internal::SlotStacksContain(slot_, a, bytes);
}

absl::Status Compartment::Reset() {
  internal::OpenAllKeysInThisThread();
  // Not while an exiting thread runs key destructors inside.
  absl::MutexLock exit_lock(&internal::LibcExitMutex(slot_));
  // Loaded code's destructors run inside before its images go; not after a
  // fault, when the compartment refuses calls.
  if (loader_ != nullptr && generation_.load() != 0) loader_->RunFinalizers();
  // The key cache leaves the heap alone while it is reset.
  internal::PinSlot(slot_);
  heap_->BeginDrop();
  const uint64_t generation = internal::RenewSlot(slot_);
  libc_->Reset();
  absl::Status reset = heap_->Reset();
  if (reset.ok() && MPKBOX_TAKE_SWITCH(fail_next_reset)) {
    reset = absl::InternalError(absl::StrFormat(
        "compartment '%s': Reset failed (FailNextResetForTesting)", name()));
  }
  generation_.store(reset.ok() ? generation : 0,  // 0: refuse calls
                    std::memory_order_relaxed);
  internal::UnpinSlot(slot_);
  if (!reset.ok()) return reset;
  last_fault_.reset();
  // The images went with the heap: the same objects again, at the same
  // addresses, freshly constructed.
  if (loader_ != nullptr) {
    if (absl::Status s = loader_->Reload(); !s.ok()) {
      generation_.store(0, std::memory_order_relaxed);
      return s;
    }
  }
  return absl::OkStatus();
}

const FaultReport* Compartment::last_fault() const { return last_fault_.get(); }

CompartmentStats Compartment::stats() const {
  CompartmentStats stats = heap_->Stats();
  stats.stdio_bytes = libc_->stdio.bytes();
  stats.stdio_dropped_bytes = libc_->stdio.dropped_bytes();
  return stats;
}

}  // namespace mpkbox
