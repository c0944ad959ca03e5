// Per-thread state the gate reads. Internal: the Call and Callback templates
// need it inline; nothing here is part of the API contract.
#ifndef MPKBOX_INTERNAL_THREAD_BLOCK_H_
#define MPKBOX_INTERNAL_THREAD_BLOCK_H_

#include <cstddef>
#include <cstdint>

#include "mpkbox/internal/gate_layout.h"

namespace mpkbox::internal {

inline constexpr size_t kMaxCompartments = 1024;
// Deepest frame stack at which Call may enter: leaves room for the entered
// compartment's callback, so the callback gate never runs out of frames.
inline constexpr uint64_t kMaxCallDepth = MPKBOX_MAX_DEPTH - 3;

struct ThreadBlock;

// On the selector key: compartments may read it (the kernel reads the
// selector during their syscalls), only trusted code writes it.
struct alignas(MPKBOX_PAGE_SIZE) SelectorPage {
  volatile uint8_t selector;
  uint8_t pad[7];
  uint64_t current_pkru;
  uint64_t current_domain;  // the current-domain marker: 0 is the host
  ThreadBlock* trusted;
};
static_assert(offsetof(SelectorPage, selector) == MPKBOX_SEL_SELECTOR);
static_assert(offsetof(SelectorPage, current_pkru) == MPKBOX_SEL_CURRENT_PKRU);
static_assert(offsetof(SelectorPage, current_domain) ==
              MPKBOX_SEL_CURRENT_DOMAIN);
static_assert(offsetof(SelectorPage, trusted) == MPKBOX_SEL_TRUSTED);

struct Frame {
  uint64_t kind;
  uint64_t sp;
  uint64_t ret;
  uint64_t rbx, rbp, r12, r13, r14, r15;
  uint64_t prev_pkru;
  uint64_t prev_domain;
  uint64_t ctx;
  uint64_t saved_top;
  uint64_t pad[3];
};
static_assert(sizeof(Frame) == (1 << MPKBOX_FRAME_SHIFT));
static_assert(offsetof(Frame, sp) == MPKBOX_FR_SP);
static_assert(offsetof(Frame, ret) == MPKBOX_FR_RET);
static_assert(offsetof(Frame, rbx) == MPKBOX_FR_RBX);
static_assert(offsetof(Frame, r15) == MPKBOX_FR_R15);
static_assert(offsetof(Frame, prev_pkru) == MPKBOX_FR_PREV_PKRU);
static_assert(offsetof(Frame, prev_domain) == MPKBOX_FR_PREV_DOMAIN);
static_assert(offsetof(Frame, ctx) == MPKBOX_FR_CTX);
static_assert(offsetof(Frame, saved_top) == MPKBOX_FR_SAVED_TOP);

// What this thread needs to enter one compartment.
struct CallContext {
  uint64_t pkru;
  uint64_t top;
  uint64_t domain;
  uint64_t generation;  // matches Compartment's, else the context is stale
  uintptr_t stack_base;  // lowest mapped byte, guard page included
  size_t stack_size;
  uint64_t pad[2];
};
static_assert(offsetof(CallContext, pkru) == MPKBOX_CTX_PKRU);
static_assert(offsetof(CallContext, top) == MPKBOX_CTX_TOP);
static_assert(offsetof(CallContext, domain) == MPKBOX_CTX_DOMAIN);

struct CallbackEntry {
  uint64_t fn;
  uint64_t domain;
};
static_assert(sizeof(CallbackEntry) == (1 << MPKBOX_CB_SHIFT));

// On the trusted key. The page before it is the thread's SelectorPage.
struct ThreadBlock {
  uint64_t depth;
  CallContext* pending_ctx;
  uint64_t pending_fn;
  uint64_t fault;  // nonzero when the call that just returned did not finish
  CallbackEntry* callbacks;
  uint64_t pad[3];
  Frame frames[MPKBOX_MAX_DEPTH];
  CallContext contexts[kMaxCompartments];
};
static_assert(offsetof(ThreadBlock, depth) == MPKBOX_TB_DEPTH);
static_assert(offsetof(ThreadBlock, pending_ctx) == MPKBOX_TB_PENDING_CTX);
static_assert(offsetof(ThreadBlock, pending_fn) == MPKBOX_TB_PENDING_FN);
static_assert(offsetof(ThreadBlock, fault) == MPKBOX_TB_FAULT);
static_assert(offsetof(ThreadBlock, callbacks) == MPKBOX_TB_CALLBACKS);
static_assert(offsetof(ThreadBlock, frames) == MPKBOX_TB_FRAMES);

}  // namespace mpkbox::internal

// This thread's selector page, or null before its first entry. TLS is on
// key 0: compartments can read it but, under Ambient::kReadOnly, not change it.
extern "C" __thread __attribute__((tls_model("initial-exec")))
mpkbox::internal::SelectorPage* mpkbox_tls_thread;

namespace mpkbox::internal {
inline ThreadBlock* CurrentThreadBlock() {
  SelectorPage* sel = mpkbox_tls_thread;
  return sel == nullptr ? nullptr : sel->trusted;
}
}  // namespace mpkbox::internal

#endif  // MPKBOX_INTERNAL_THREAD_BLOCK_H_
