// Offsets shared by the assembly gate (trampolines/gate.S) and C++
// (include/mpkbox/internal/thread_block.h, which static_asserts them).
// Plain #defines: this file is included by the assembler too.
#ifndef MPKBOX_INTERNAL_GATE_LAYOUT_H_
#define MPKBOX_INTERNAL_GATE_LAYOUT_H_

#define MPKBOX_PAGE_SIZE 4096
// mpkbox_ambient (trampolines.h): globals compartment-rights code reads.
#define MPKBOX_AMBIENT_VECTOR_LEVEL 0

// SelectorPage: one page on the selector key, read-only to compartments.
// Its words start 0x540 into the page, not at 0: compartment malloc and free
// load current_domain on every call, and a load at the page offset of a
// store still in flight waits for it (4K aliasing), and regions of 512 B
// and up start at multiples of 512 (4 KiB ones at 0): their headers' stores
// made 4 KiB batches 2-3x slower (bench/RESULTS.md, issue 16 item 5). The
// second half of a 512-byte block; a multiple of 64 keeps the gate's lines.
#define MPKBOX_SEL_BASE 1344  // 0x540; the offsets below are literal for gas
#define MPKBOX_SEL_SELECTOR 1344  // Syscall User Dispatch byte
#define MPKBOX_SEL_CURRENT_PKRU 1352  // of the running domain
#define MPKBOX_SEL_CURRENT_DOMAIN 1360  // its id (0: host)
#define MPKBOX_SEL_THREAD_BLOCK 1368  // always the next page
// Registers the resume stub restores after it has dropped to compartment
// rights (it can no longer read the ThreadBlock then).
#define MPKBOX_SEL_RESUME_RAX 1376
#define MPKBOX_SEL_RESUME_RCX 1384
#define MPKBOX_SEL_RESUME_RDX 1392
#define MPKBOX_SEL_RESUME_RIP 1400
#define MPKBOX_SEL_RESUME_RFLAGS 1408
// Frame* the gate's landing will pop, written on entry: a hint the landing
// loads before its WRPKRU and checks after it (nested calls leave it stale).
#define MPKBOX_SEL_LANDING_HINT 1416

#define MPKBOX_SELECTOR_ALLOW 0
#define MPKBOX_SELECTOR_BLOCK 1

// ThreadBlock: trusted key, never readable by compartments.
#define MPKBOX_TB_DEPTH 0
#define MPKBOX_TB_PENDING_CTX 8
#define MPKBOX_TB_PENDING_FN 16
#define MPKBOX_TB_FAULT 24
#define MPKBOX_TB_CALLBACKS 32  // CallbackEntry* (the process-wide table)
#define MPKBOX_TB_RESUME 40     // ResumeState*: the other registers to resume
#define MPKBOX_TB_SIGSTACK_LO 48  // this thread's trusted signal stack
#define MPKBOX_TB_SIGSTACK_HI 56
#define MPKBOX_TB_SIGNAL_NESTING 64  // handlers running on this thread
#define MPKBOX_TB_SIGNAL_RSP 72      // rsp of a kernel entry when none runs
#define MPKBOX_TB_SIGNAL_INFO 80     // siginfo - ucontext in a kernel frame
#define MPKBOX_TB_RESUME_TRUSTED 88  // ResumeState* for trusted code
#define MPKBOX_TB_HOST_FS 104        // the thread's own FS base (its TLS)
#define MPKBOX_TB_FS_REPAIRED 112    // the signal entry put it back
#define MPKBOX_TB_FRAMES 128

// ResumeState (trusted): what the resume stub restores with host rights.
#define MPKBOX_RS_RBX 0
#define MPKBOX_RS_RBP 8
#define MPKBOX_RS_RSI 16
#define MPKBOX_RS_RDI 24
#define MPKBOX_RS_R8 32
#define MPKBOX_RS_R9 40
#define MPKBOX_RS_R10 48
#define MPKBOX_RS_R11 56
#define MPKBOX_RS_R12 64
#define MPKBOX_RS_R13 72
#define MPKBOX_RS_R14 80
#define MPKBOX_RS_R15 88
#define MPKBOX_RS_RSP 96
#define MPKBOX_RS_RAX 104       // the trusted resume restores these too
#define MPKBOX_RS_RCX 112
#define MPKBOX_RS_RDX 120
#define MPKBOX_RS_RIP 128
#define MPKBOX_RS_RFLAGS 136

// Threads that enter compartments carry an identity in the first GDT TLS
// slot (runtime/thread_identity.h): `lsl` of this selector gives the
// thread's index in mpkbox_thread_table.
#define MPKBOX_IDENTITY_ENTRY 12
#define MPKBOX_IDENTITY_SELECTOR ((MPKBOX_IDENTITY_ENTRY << 3) | 3)
#define MPKBOX_MAX_THREAD_IDS 65536

// The fixed PKRU the kernel starts every signal handler with (init_pkru).
// Runtime::Init checks it; the signal entry compares against it.
#define MPKBOX_INIT_PKRU 0x55555554

// Frame: one per gate transition, in ThreadBlock::frames.
#define MPKBOX_FRAME_SHIFT 7  // sizeof(Frame) == 128
#define MPKBOX_FR_KIND 0
#define MPKBOX_FR_SP 8           // host rsp (call) or compartment rsp (callback)
#define MPKBOX_FR_RET 16         // host return address (call), CallbackEntry (callback)
#define MPKBOX_FR_RBX 24
#define MPKBOX_FR_RBP 32
#define MPKBOX_FR_R12 40
#define MPKBOX_FR_R13 48
#define MPKBOX_FR_R14 56
#define MPKBOX_FR_R15 64
#define MPKBOX_FR_PREV_PKRU 72
#define MPKBOX_FR_PREV_DOMAIN 80
#define MPKBOX_FR_CTX 88         // CallContext* of the compartment entered
#define MPKBOX_FR_SAVED_TOP 96   // callback: CallContext::top to restore

#define MPKBOX_FR_DEADLINE 104   // call: absolute CLOCK_MONOTONIC ns, 0 = none
#define MPKBOX_FR_MXCSR 112      // the interrupted side's SSE control word
#define MPKBOX_FR_FCW 116        // and x87 control word (callee-saved, ABI)
#define MPKBOX_FR_SCRATCH 120    // for comparing control words
#define MPKBOX_FR_RETURNS 126    // callback: what the host function returns

#define MPKBOX_FRAME_CALL 1
#define MPKBOX_FRAME_CALLBACK 2
#define MPKBOX_MAX_DEPTH 64

// CallContext: per (thread, compartment), in the ThreadBlock.
#define MPKBOX_CTX_PKRU 0
#define MPKBOX_CTX_TOP 8         // rsp for the next entry; [top] holds a CFI copy
#define MPKBOX_CTX_DOMAIN 16
#define MPKBOX_CTX_STACK_BASE 32   // lowest byte of the guard page
#define MPKBOX_CTX_STACK_SIZE 40

// CallbackEntry: the process-wide callback table, trusted key.
#define MPKBOX_CB_SHIFT 5        // sizeof(CallbackEntry) == 32
#define MPKBOX_CB_FN 0
#define MPKBOX_CB_DOMAIN 8
#define MPKBOX_CB_RETURNS 16     // MPKBOX_RETURNS_*: which result register
#define MPKBOX_CB_TARGET 24      // what a checking wrapper at CB_FN calls
// What a callback returns, so the way back clears the other registers.
#define MPKBOX_RETURNS_NOTHING 0
#define MPKBOX_RETURNS_INTEGER 1  // rax
#define MPKBOX_RETURNS_FLOAT 2    // xmm0
// A CallbackEntry domain every compartment may call: the runtime's own
// allocator entry (callback 0) and libc entry (callback 1).
#define MPKBOX_ANY_DOMAIN -1
#define MPKBOX_ALLOCATOR_CALLBACK 0
#define MPKBOX_LIBC_CALLBACK 1
#define MPKBOX_MAX_CALLBACKS 1024
#define MPKBOX_CB_STUB_SHIFT 4   // each stub is 16 bytes

#endif  // MPKBOX_INTERNAL_GATE_LAYOUT_H_
