// CompartmentPool: compartments made ready once, leased one request at a
// time, and Reset when the lease ends, so nothing of one request reaches the
// next (the shape of Sandboxed API's SandboxPool and Wasmtime's pooling
// allocator). The common server case is one line per request:
//
//   auto pool = mpkbox::CompartmentPool::Create({
//       .compartment = {.name = "xml", .heap_limit_bytes = 16 << 20},
//       .size = 8,
//       .setup = [](mpkbox::Compartment& c) { return c.Load("libxml2.so.2"); },
//   });
//   ...
//   absl::StatusOr<mpkbox::CompartmentPool::Lease> box = (*pool)->Acquire();
//   if (!box.ok()) return box.status();
//   auto r = (*box)->Call(parse, ...);   // the lease's end resets it
//
// Reset keeps what `setup` loaded (its images are reloaded, constructors run
// again) and drops everything else: heap, stacks' contents, descriptors.
// State `setup` made beyond Load (allocations, calls' side effects) does not
// survive a lease; make it in each request instead. Thread-safe.
#ifndef MPKBOX_COMPARTMENT_POOL_H_
#define MPKBOX_COMPARTMENT_POOL_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mpkbox/compartment.h"
#include "mpkbox/compartment_options.h"

namespace mpkbox {

class CompartmentPool {
 public:
  struct Options {
    // Each compartment's options; its name gets "-<index>" appended.
    CompartmentOptions compartment = {};
    size_t size = 4;
    // Runs once on each new compartment (and on a replacement for one whose
    // Reset failed), typically Load.
    std::function<absl::Status(Compartment&)> setup = {};
  };

  // A compartment on loan: Reset and returned to the pool when destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();

    Compartment& operator*() const { return *box_; }
    Compartment* operator->() const { return box_; }

   private:
    friend class CompartmentPool;
    Lease(CompartmentPool* pool, Compartment* box) : pool_(pool), box_(box) {}
    void Return();

    CompartmentPool* pool_;
    Compartment* box_;
  };

  // Creates `size` compartments and runs `setup` on each: the first error
  // (kInvalidArgument for size 0, kResourceExhausted when protection keys
  // run out, setup's own) and no pool.
  static absl::StatusOr<std::unique_ptr<CompartmentPool>> Create(
      Options options);

  // Every lease must have ended.
  ~CompartmentPool();

  CompartmentPool(const CompartmentPool&) = delete;
  CompartmentPool& operator=(const CompartmentPool&) = delete;

  // A compartment, waiting up to `timeout` for one to be returned:
  // kDeadlineExceeded when none was, kUnavailable when the pool has lost
  // compartments it could not replace and has none left.
  absl::StatusOr<Lease> Acquire(
      absl::Duration timeout = absl::InfiniteDuration());
  // A compartment if one is free now, else kUnavailable.
  absl::StatusOr<Lease> TryAcquire() { return Acquire(absl::ZeroDuration()); }

  size_t size() const;       // compartments the pool owns
  size_t available() const;  // of those, not on loan

  // Why the last compartment that could not be reset or replaced was
  // dropped; OK if none was. A lease's end cannot return a status: a Reset
  // that fails there is reported here (the compartment is destroyed and a
  // fresh one made with `setup` takes its place, so size() is unchanged);
  // when the replacement fails too, both errors are in the message and the
  // pool is one smaller.
  absl::Status last_error() const;

 private:
  explicit CompartmentPool(Options options) : options_(std::move(options)) {}
  absl::StatusOr<std::unique_ptr<Compartment>> Make(size_t index);
  // Resets `box` (or replaces it) and makes it available again.
  void Release(Compartment* box);

  const Options options_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Compartment>> owned_ ABSL_GUARDED_BY(mu_);
  std::vector<Compartment*> free_ ABSL_GUARDED_BY(mu_);
  size_t next_index_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mpkbox

#endif  // MPKBOX_COMPARTMENT_POOL_H_
