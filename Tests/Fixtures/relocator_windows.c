// Hand-written inline windows for the window oracle (Tests/RelocatorTests/WindowOracleTests.swift).
//
// One function `window_<rule>` per relocation rule of an inline window, shaped so that the planner
// (the engine's InlineSites) gives it a window that exercises the rule; the oracle checks that it did
// (WindowRules.swift), then runs each window at its own address and relocated into its pad from many
// starting states, and compares. Built as a shared library and loaded into the oracle's child; nothing
// here is ever called. Registers hold addresses in the oracle's data buffer, so memory operands through
// them are valid; `window_helper` and `wpointer` give calls a real target.
//
// The padding after a function (up to the next symbol) is what the planner may patch into: the
// explicit `.fill`s make it int3s of a known length.

__asm__(
    ".intel_syntax noprefix\n"
    ".macro WINDOW name\n"
    "  .balign 16\n"
    "  .globl window_\\name\n"
    "  .hidden window_\\name\n"
    "  .type window_\\name, @function\n"
    "  window_\\name:\n"
    ".endm\n"
    ".macro END name\n"
    "  .size window_\\name, . - window_\\name\n"
    ".endm\n"

    ".data\n"
    ".balign 64\n"
    "wdata:\n"
    "  .set i, 0\n"
    "  .rept 16\n"
    "  .quad 0x0123456789abcdef * (i + 1)\n"
    "  .set i, i + 1\n"
    "  .endr\n"
    "wpointer: .quad window_helper\n"
    ".text\n"

    // A call target: `mov rax, rdi; ret`, an entry window of the ret alone, patched into padding.
    "WINDOW helper\n"
    "  mov rax, rdi\n"
    "  ret\n"
    "END helper\n"
    "  .fill 8, 1, 0xcc\n"

    // RIP-relative loads after `push rbp` (the entry's stack pointer is 8 above the window's), taken
    // on to the ret: one window records the entry and the return.
    "WINDOW riprel_load\n"
    "  push rbp\n"
    "  mov rax, qword ptr [rip + wdata]\n"
    "  add rax, qword ptr [rip + wdata + 8]\n"
    "  movzx ecx, byte ptr [rip + wdata + 3]\n"
    "  lea rdx, [rip + wdata + 0x40]\n"
    "  pop rbp\n"
    "  ret\n"
    "END riprel_load\n"

    "WINDOW riprel_store\n"
    "  endbr64\n"
    "  mov qword ptr [rip + wdata + 16], rdi\n"
    "  add dword ptr [rip + wdata + 24], 1\n"
    "  movaps xmmword ptr [rip + wdata + 32], xmm0\n"
    "  ret\n"
    "END riprel_store\n"

    // A jcc rel8 that leaves the window; its target starts an exit window.
    "WINDOW jcc_rel8\n"
    "  endbr64\n"
    "  test edi, edi\n"
    "  je 1f\n"
    "  mov eax, 1\n"
    "  ret\n"
    "1:\n"
    "  mov eax, 2\n"
    "  ret\n"
    "END jcc_rel8\n"

    "WINDOW jcc_rel32\n"
    "  endbr64\n"
    "  cmp rdi, rsi\n"
    "  {disp32} jl 1f\n"
    "  lea rax, [rdi + rsi]\n"
    "  ret\n"
    "1:\n"
    "  lea rax, [rsi + 1]\n"
    "  ret\n"
    "END jcc_rel32\n"

    // loop, loopne, jrcxz and jecxz exist only with rel8: relocated as a short branch over a long jump.
    "WINDOW loop\n"
    "  endbr64\n"
    "  mov eax, edi\n"
    "  loop 1f\n"
    "  add eax, 7\n"
    "  ret\n"
    "1:\n"
    "  sub eax, 0x1000\n"
    "  ret\n"
    "END loop\n"

    "WINDOW loopne\n"
    "  endbr64\n"
    "  cmp edi, esi\n"
    "  loopne 1f\n"
    "  mov eax, 7\n"
    "  ret\n"
    "1:\n"
    "  mov eax, 0x1000\n"
    "  ret\n"
    "END loopne\n"

    "WINDOW jrcxz\n"
    "  endbr64\n"
    "  jrcxz 1f\n"
    "  mov eax, 3\n"
    "  ret\n"
    "1:\n"
    "  mov eax, 4\n"
    "  ret\n"
    "END jrcxz\n"

    "WINDOW jecxz\n"
    "  endbr64\n"
    "  jecxz 1f\n"
    "  mov eax, 3\n"
    "  ret\n"
    "1:\n"
    "  mov eax, 4\n"
    "  ret\n"
    "END jecxz\n"

    // A jcc back to the start of its own (exit) window: in a patched process it re-enters the pad.
    "WINDOW loop_to_start\n"
    "  endbr64\n"
    "  mov eax, 0x10\n"
    "1:\n"
    "  sub rdi, 1\n"
    "  jne 1b\n"
    "  ret\n"
    "END loop_to_start\n"

    // ret imm16, at the end of an entry window and of an exit window.
    "WINDOW ret_imm16\n"
    "  endbr64\n"
    "  test edi, edi\n"
    "  jne 1f\n"
    "  mov eax, 1\n"
    "  ret 16\n"
    "1:\n"
    "  add rsp, 8\n"
    "  ret 16\n"
    "END ret_imm16\n"

    // Windows that end in a jump within the function, rel8 and rel32.
    "WINDOW jmp_rel8\n"
    "  endbr64\n"
    "  add eax, 1\n"
    "  jmp 1f\n"
    "  nop\n"
    "1:\n"
    "  lea eax, [rdi + 0x100]\n"
    "  ret\n"
    "END jmp_rel8\n"

    "WINDOW jmp_rel32\n"
    "  endbr64\n"
    "  add eax, 1\n"
    "  {disp32} jmp 1f\n"
    "  nop\n"
    "1:\n"
    "  lea eax, [rdi + 0x100]\n"
    "  ret\n"
    "END jmp_rel32\n"

    // Windows that end in a call: direct, through a register, through memory, through RIP-relative
    // memory. Each return point is a branch target, so the ret after it has its own window, patched
    // into the padding.
    "WINDOW call_direct\n"
    "  push rbp\n"
    "  mov rbp, rsp\n"
    "  call window_helper\n"
    "  pop rbp\n"
    "  ret\n"
    "END call_direct\n"
    "  .fill 8, 1, 0xcc\n"

    "WINDOW call_register\n"
    "  push rbx\n"
    "  mov rbx, rdi\n"
    "  call rax\n"
    "  pop rbx\n"
    "  ret\n"
    "END call_register\n"
    "  .fill 8, 1, 0xcc\n"

    "WINDOW call_r11\n"
    "  push rbx\n"
    "  lea rbx, [rdi + 8]\n"
    "  call r11\n"
    "  pop rbx\n"
    "  ret\n"
    "END call_r11\n"
    "  .fill 8, 1, 0xcc\n"

    // call rsp: its target is RSP before the call pushes; an emulation that pushes first and then
    // jumps through RSP lands 8 bytes below it.
    "WINDOW call_rsp\n"
    "  push rbx\n"
    "  mov rbx, rdi\n"
    "  call rsp\n"
    "  pop rbx\n"
    "  ret\n"
    "END call_rsp\n"
    "  .fill 8, 1, 0xcc\n"

    "WINDOW call_memory\n"
    "  push rbx\n"
    "  xor eax, eax\n"
    "  call qword ptr [rdi + 8]\n"
    "  pop rbx\n"
    "  ret\n"
    "END call_memory\n"
    "  .fill 8, 1, 0xcc\n"

    "WINDOW call_riprel\n"
    "  endbr64\n"
    "  call qword ptr [rip + wpointer]\n"
    "  ret\n"
    "END call_riprel\n"
    "  .fill 8, 1, 0xcc\n"

    // Windows shorter than the jump, patched on into the padding after the function: an exit window
    // (`xor eax, eax; ret` at a branch target) and an entry window.
    "WINDOW padding_exit\n"
    "  endbr64\n"
    "  test edi, edi\n"
    "  jne 1f\n"
    "  mov eax, 5\n"
    "  ret\n"
    "1:\n"
    "  xor eax, eax\n"
    "  ret\n"
    "END padding_exit\n"
    "  .fill 8, 1, 0xcc\n"

    "WINDOW padding_entry\n"
    "  endbr64\n"
    "  xor eax, eax\n"
    "  ret\n"
    "END padding_entry\n"
    "  .fill 8, 1, 0xcc\n"

    // An exit window of three bytes in the middle of the function: its site gets a jmp rel8 to the
    // padding, which holds the jmp rel32 to the pad.
    "WINDOW short_jump\n"
    "  endbr64\n"
    "  test edi, edi\n"
    "  jne 1f\n"
    "  mov eax, 1\n"
    "  ret\n"
    "1:\n"
    "  xor eax, eax\n"
    "  ret\n"
    "  mov eax, 7\n"
    "  ret\n"
    "END short_jump\n"
    "  .fill 8, 1, 0xcc\n"

    // push, sub rsp, stores and loads through rsp, add rsp and pops, all in one entry window that
    // runs on to the ret.
    "WINDOW stack\n"
    "  endbr64\n"
    "  push rbx\n"
    "  push r12\n"
    "  sub rsp, 0x28\n"
    "  mov qword ptr [rsp + 8], rdi\n"
    "  mov rax, qword ptr [rsp + 8]\n"
    "  add rsp, 0x28\n"
    "  pop r12\n"
    "  pop rbx\n"
    "  ret\n"
    "END stack\n"

    // A prologue window and an epilogue window (add rsp, pops, ret), apart.
    "WINDOW stack_apart\n"
    "  endbr64\n"
    "  push rbx\n"
    "  push rbp\n"
    "  sub rsp, 0x18\n"
    "  test edi, edi\n"
    "  jne 1f\n"
    "  mov qword ptr [rsp], rdi\n"
    "1:\n"
    "  add rsp, 0x18\n"
    "  pop rbp\n"
    "  pop rbx\n"
    "  ret\n"
    "END stack_apart\n"

    // The first instruction reserves stack: the entry's stack pointer is 0x18 above the window's.
    "WINDOW sub_first\n"
    "  sub rsp, 0x18\n"
    "  mov qword ptr [rsp + 8], rdi\n"
    "  mov rax, qword ptr [rsp + 8]\n"
    "  add rsp, 0x18\n"
    "  ret\n"
    "END sub_first\n"

    // Flags set by the first instruction (before the window) and read after the window: the pad's
    // probe must hand them on. The loop makes `1:` a branch target, so the window stops before it.
    "WINDOW flags\n"
    "  cmp edi, esi\n"
    "  mov eax, 0x11\n"
    "1:\n"
    "  cmovl eax, edx\n"
    "  dec esi\n"
    "  jns 1b\n"
    "  ret\n"
    "END flags\n"

    // Windows that fault from the oracle's state, after the entry probe has run: a load 1 GiB past
    // the data buffer (SIGSEGV) and a division by zero (SIGFPE). The pad must fault at the relocated
    // copy of the same instruction, with the same registers and memory.
    "WINDOW fault_load\n"
    "  endbr64\n"
    "  mov rax, qword ptr [rdi + 0x40000000]\n"
    "  ret\n"
    "END fault_load\n"

    "WINDOW fault_divide\n"
    "  endbr64\n"
    "  xor ecx, ecx\n"
    "  div rcx\n"
    "  ret\n"
    "END fault_divide\n"

    ".att_syntax prefix\n");
