#include "mpkbox/compartment_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mpkbox {

CompartmentPool::Lease::Lease(Lease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      box_(std::exchange(other.box_, nullptr)) {}

CompartmentPool::Lease& CompartmentPool::Lease::operator=(
    Lease&& other) noexcept {
  if (this != &other) {
    Return();
    pool_ = std::exchange(other.pool_, nullptr);
    box_ = std::exchange(other.box_, nullptr);
  }
  return *this;
}

CompartmentPool::Lease::~Lease() { Return(); }

void CompartmentPool::Lease::Return() {
  if (pool_ != nullptr && box_ != nullptr) pool_->Release(box_);
  pool_ = nullptr;
  box_ = nullptr;
}

absl::StatusOr<std::unique_ptr<CompartmentPool>> CompartmentPool::Create(
    Options options) {
  if (options.size == 0) {
    return absl::InvalidArgumentError("CompartmentPool: size is 0");
  }
  std::unique_ptr<CompartmentPool> pool(new CompartmentPool(std::move(options)));
  absl::MutexLock lock(&pool->mu_);
  for (size_t i = 0; i < pool->options_.size; ++i) {
    absl::StatusOr<std::unique_ptr<Compartment>> box =
        pool->Make(pool->next_index_++);
    if (!box.ok()) return box.status();
    pool->free_.push_back(box->get());
    pool->owned_.push_back(*std::move(box));
  }
  return pool;
}

CompartmentPool::~CompartmentPool() = default;

absl::StatusOr<std::unique_ptr<Compartment>> CompartmentPool::Make(
    size_t index) {
  CompartmentOptions o = options_.compartment;
  o.name = absl::StrCat(o.name.empty() ? "pool" : o.name, "-", index);
  absl::StatusOr<std::unique_ptr<Compartment>> box =
      Compartment::Create(std::move(o));
  if (!box.ok()) return box.status();
  if (options_.setup) {
    if (absl::Status s = options_.setup(**box); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("CompartmentPool setup of '",
                                                 (*box)->name(),
                                                 "': ", s.message()));
    }
  }
  return box;
}

absl::StatusOr<CompartmentPool::Lease> CompartmentPool::Acquire(
    absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !free_.empty() || owned_.empty();
  };
  if (!ready()) mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (owned_.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "CompartmentPool: no compartment left (the last could not be "
        "replaced: ",
        last_error_.ToString(), ")"));
  }
  if (free_.empty()) {
    if (timeout == absl::ZeroDuration()) {
      return absl::UnavailableError(absl::StrFormat(
          "CompartmentPool: all %u compartments are on loan", owned_.size()));
    }
    return absl::DeadlineExceededError(absl::StrFormat(
        "CompartmentPool: none of %u compartments was returned within %s",
        owned_.size(), absl::FormatDuration(timeout)));
  }
  Compartment* box = free_.back();
  free_.pop_back();
  return Lease(this, box);
}

void CompartmentPool::Release(Compartment* box) {
  // Outside the lock: Reset takes microseconds, a replacement much longer.
  absl::Status reset = box->Reset();
  if (reset.ok()) {
    absl::MutexLock lock(&mu_);
    free_.push_back(box);
    return;
  }
  // A compartment that cannot be reset is never handed out again. It goes
  // first, so that its protection key is free for the replacement.
  std::unique_ptr<Compartment> dropped;
  size_t index;
  {
    absl::MutexLock lock(&mu_);
    auto it = std::find_if(owned_.begin(), owned_.end(),
                           [box](const auto& p) { return p.get() == box; });
    dropped = std::move(*it);
    owned_.erase(it);
    index = next_index_++;
  }
  dropped.reset();
  absl::StatusOr<std::unique_ptr<Compartment>> fresh = Make(index);
  absl::MutexLock lock(&mu_);
  if (!fresh.ok()) {
    // Both errors: why the compartment went, and why nothing replaced it.
    last_error_ = absl::Status(
        fresh.status().code(),
        absl::StrCat(fresh.status().message(), " (replacing a compartment "
                     "whose Reset failed: ", reset.message(), ")"));
    return;
  }
  last_error_ = reset;
  free_.push_back(fresh->get());
  owned_.push_back(*std::move(fresh));
}

size_t CompartmentPool::size() const {
  absl::MutexLock lock(&mu_);
  return owned_.size();
}

size_t CompartmentPool::available() const {
  absl::MutexLock lock(&mu_);
  return free_.size();
}

absl::Status CompartmentPool::last_error() const {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

}  // namespace mpkbox
