// What the kernel writes in a signal frame that mpkbox reads or changes: PKRU
// in the frame's XSAVE area, and the marker of a frame already dispatched.
#ifndef MPKBOX_RUNTIME_SIGNAL_FRAME_H_
#define MPKBOX_RUNTIME_SIGNAL_FRAME_H_

#include <signal.h>
#include <ucontext.h>

#include <cstdint>

#include "absl/status/status.h"

namespace mpkbox::internal {

// Marks a frame as dispatched. The kernel writes uc_link = 0 in every frame
// it builds and sigreturn ignores it, so a marked frame on the signal stack
// is an old one: jumping into the entry with it would replay it.
inline constexpr uintptr_t kConsumedFrame = 0x6d70'6b62'6f78'2121;  // "mpkbox!!"

// Learns where PKRU sits in a frame (CPUID 0xD.9) and checks, with one
// signal, that the kernel starts handlers with MPKBOX_INIT_PKRU and saves
// PKRU there. Before any other function here.
absl::Status LearnSignalFrameLayout();

// PKRU as saved in a signal frame, and how to change what sigreturn loads.
uint32_t FramePkru(const ucontext_t* uc);
void SetFramePkru(ucontext_t* uc, uint32_t pkru);
// The frame's XSAVE area (standard format, what sigreturn loads) and the
// state components it holds; nullptr if the kernel wrote no XSAVE area.
void* FrameXsave(const ucontext_t* uc, uint64_t* xfeatures);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SIGNAL_FRAME_H_
