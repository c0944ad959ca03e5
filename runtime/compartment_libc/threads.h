// Loaded code's thread synchronisation (threads.cc): what the runtime calls
// from outside it.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_THREADS_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_THREADS_H_

#include "trampolines/thread_block.h"

namespace mpkbox::internal {

// The thread of `sel` exits: in every compartment where it set a thread
// key's value, the keys' destructors run inside on this thread (POSIX's
// thread exit), and its values are freed. Not for the main thread: its
// exit is the process's, where POSIX runs none.
void RunThreadKeyDestructorsAtExit(SelectorPage* sel);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_THREADS_H_
