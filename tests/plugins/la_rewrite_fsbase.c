/* loader_attack_gadget_rewrite_test.cc: WRFSBASE (f3 0f ae d0) spanning
   three instructions: mov $0x0ff30000,%eax (b8 00 00 f3 0f), scasb (ae),
   shl %eax (d1 e0, whose opcode is the ModRM d1 of WRFSBASE %ecx).
   None of the rewriter's re-encodings can remove a spanning WRFSBASE or
   WRGSBASE (docs/INTERNALS.md, "Gadget bytes"): 0f ae /2 and /3 with mod 3
   are invalid without F3, so 0f ae d0-df never starts an instruction; the
   F3 is then inside the instruction before, as its ModRM only
   when an immediate follows (83 f3 0f, xor $15,%ebx: no other encoding of
   its length); 0f is a scale-1 SIB only after a ModRM 64 or 44, which F3
   cannot precede as an opcode; 0f and ae as ModRM have memory operands;
   and d0-df after ae is an opcode. Load refuses it, naming the
   instructions it could not re-encode. */
int la_rw_fsbase(void* p) {
  int r;
  __asm__ volatile(
      ".byte 0xb8, 0x00, 0x00, 0xf3, 0x0f\n" /* mov $0x0ff30000, %eax */
      ".byte 0xae\n"                         /* scasb */
      ".byte 0xd1, 0xe0\n"                   /* shl %eax */
      : "=a"(r), "+D"(p)
      :
      : "cc", "memory");
  return r;
}
