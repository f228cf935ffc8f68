// The execution oracle's child (Tests/RelocatorTests/ExecutionOracleTests.swift).
//
// It holds one hand-written instruction per line for every rule of the Relocator, as global asm
// functions `case_<group>_<name>`: the oracle runs each instruction on its own, at its own address and
// relocated, and compares the results. The group says what the Relocator must do with every
// instruction in it (the oracle checks): `riprel` ones are re-targeted, rewritten with a scratch
// register and trampolined; `flow` ones are emulated; `plain` ones copied and trampolined; `syscall`
// only trampolined; `refuse` ones refused; `undecodable` ones are what Capstone 4 cannot decode.
//
// Arguments: shared objects to dlopen first (the other fixtures, built as libraries), so that their
// code runs here too. Then it maps the memory the oracle runs instructions in (see oracle_layout.h),
// publishes it in `relocator_layout`, and stops itself with SIGSTOP. It never runs past that stop: the
// oracle drives it with ptrace and kills it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../OracleSupport/include/oracle_layout.h"

struct oracle_layout relocator_layout;

// Every word of the data and stack buffers holds an address inside the data buffer: a `ret`, `jmp
// [mem]` or `call [mem]` then goes somewhere canonical, and a pointer chased from memory stays valid.
static uint64_t pattern_word(uint64_t address) {
    uint64_t x = address * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    return ORACLE_DATA_BASE + x % (ORACLE_DATA_SIZE - 64);
}

static void fill(uint64_t start, uint64_t size) {
    for (uint64_t a = start; a < start + size; a += 8) *(uint64_t *)a = pattern_word(a);
}

static void fail(const char *what) {
    fprintf(stderr, "relocator_cases: %s: %m\n", what);
    _exit(2);
}

static void *map_at(uint64_t address, uint64_t size) {
    void *p = mmap((void *)address, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    return p == MAP_FAILED || (uint64_t)p != address ? NULL : p;
}

// A code page within reach of all of [start, end): just below it, or failing that just above, in
// 1 MiB steps (the loader packs libraries together; the gap below the lowest is free).
static uint64_t map_near(uint64_t start, uint64_t end) {
    for (uint64_t step = 1 << 20; step <= (1ULL << 30); step += 1 << 20) {
        uint64_t candidates[2] = {(start & ~0xfffULL) - step, ((end + 0xfff) & ~0xfffULL) + step};
        for (int i = 0; i < 2; i++) {
            void *p = map_at(candidates[i], 4096);
            if (p == NULL) continue;
            // int3 everywhere: a relocated instruction that runs on past its own bytes stops at once.
            memset(p, 0xcc, 4096);
            if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) fail("mprotect near page");
            return (uint64_t)p;
        }
    }
    return 0;
}

static int note_module(struct dl_phdr_info *info, size_t size, void *unused) {
    (void)size, (void)unused;
    uint64_t start = UINT64_MAX, end = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        uint64_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
        if (s < start) start = s;
        if (e > end) end = e;
    }
    if (end == 0) return 0;
    if (relocator_layout.module_count == ORACLE_MAX_MODULES) fail("too many modules");
    uint64_t near = map_near(start, end);
    if (near == 0) fail("no free page within reach of a module");
    relocator_layout.modules[relocator_layout.module_count++] = (struct oracle_module_pages){start, end, near};
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (dlopen(argv[i], RTLD_NOW | RTLD_LOCAL) == NULL) {
            fprintf(stderr, "relocator_cases: dlopen %s: %s\n", argv[i], dlerror());
            _exit(2);
        }
    }
    void *data = map_at(ORACLE_DATA_BASE, ORACLE_DATA_SIZE);
    if (data == NULL) fail("map the data buffer");
    fill(ORACLE_DATA_BASE, ORACLE_DATA_SIZE);
    void *stack = mmap(NULL, ORACLE_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) fail("map the stack buffer");
    fill((uint64_t)stack, ORACLE_STACK_SIZE);
    void *far = map_at(ORACLE_FAR_BASE, 4096);
    if (far == NULL) fail("map the far page");
    memset(far, 0xcc, 4096);
    if (mprotect(far, 4096, PROT_READ | PROT_EXEC) != 0) fail("mprotect far page");
    dl_iterate_phdr(note_module, NULL);

    relocator_layout.data = ORACLE_DATA_BASE;
    relocator_layout.data_size = ORACLE_DATA_SIZE;
    relocator_layout.stack = (uint64_t)stack;
    relocator_layout.stack_size = ORACLE_STACK_SIZE;
    relocator_layout.far = (uint64_t)far;
    relocator_layout.magic = ORACLE_LAYOUT_MAGIC;
    raise(SIGSTOP);
    _exit(0);
}

// The hand-written cases. Each line is one instruction the oracle checks on its own; nothing here is
// ever called. Operands name registers freely: the oracle sets every register to point into its data
// buffer.
__asm__(
    ".intel_syntax noprefix\n"
    ".macro CASE name\n"
    "  .globl case_\\name\n"
    "  .type case_\\name, @function\n"
    "  case_\\name:\n"
    ".endm\n"
    ".macro END name\n"
    "  .size case_\\name, . - case_\\name\n"
    ".endm\n"

    ".data\n"
    ".balign 64\n"
    "case_data:\n"
    "  .set i, 0\n"
    "  .rept 512\n"
    "  .byte (i * 37 + 11) & 0xff\n"
    "  .set i, i + 1\n"
    "  .endr\n"
    "case_pointer: .quad landing_pad\n"
    ".balign 64\n"
    "case_xsave_area: .skip 4096\n"

    ".text\n"
    ".globl landing_pad\n"
    ".type landing_pad, @function\n"
    "landing_pad: ret\n"
    ".size landing_pad, . - landing_pad\n"

    // RIP-relative loads, including an immediate after the disp32 (the disp is relative to the end
    // of the instruction, not of the displacement) and REX.R / REX.W forms.
    "CASE riprel_load\n"
    "  mov rax, qword ptr [rip + case_data]\n"
    "  mov eax, dword ptr [rip + case_data + 8]\n"
    "  mov r12, qword ptr [rip + case_data + 16]\n"
    "  mov r9b, byte ptr [rip + case_data + 3]\n"
    "  movzx ecx, byte ptr [rip + case_data + 3]\n"
    "  movsx r9, word ptr [rip + case_data + 6]\n"
    "  movsxd rdx, dword ptr [rip + case_data + 12]\n"
    "  add rax, qword ptr [rip + case_data + 24]\n"
    "  sub r15d, dword ptr [rip + case_data + 28]\n"
    "  and rsi, qword ptr [rip + case_data + 32]\n"
    "  adc rbx, qword ptr [rip + case_data + 40]\n"
    "  imul edx, dword ptr [rip + case_data + 4], 1000\n"
    "  imul r10, qword ptr [rip + case_data + 8], 7\n"
    "  crc32 eax, byte ptr [rip + case_data + 9]\n"
    "  movbe ecx, dword ptr [rip + case_data + 20]\n"
    "  cmovne r11, qword ptr [rip + case_data + 48]\n"
    "  xchg rbx, qword ptr [rip + case_data + 56]\n"
    "  mov rax, qword ptr [rip + 0x12345]\n"
    "END riprel_load\n"

    "CASE riprel_store\n"
    "  mov qword ptr [rip + case_data + 32], rax\n"
    "  mov qword ptr [rip + case_data + 64], r15\n"
    "  mov dword ptr [rip + case_data + 40], 0x12345678\n"
    "  mov qword ptr [rip + case_data + 40], -2\n"
    "  mov word ptr [rip + case_data + 46], 0x1234\n"
    "  mov byte ptr [rip + case_data + 44], 7\n"
    "  add qword ptr [rip + case_data + 48], 1\n"
    "  add dword ptr [rip + case_data + 48], 0x1000\n"
    "  inc dword ptr [rip + case_data + 56]\n"
    "  neg qword ptr [rip + case_data + 56]\n"
    "  shl qword ptr [rip + case_data + 8], 3\n"
    "  sete byte ptr [rip + case_data + 90]\n"
    "  movnti qword ptr [rip + case_data + 96], rcx\n"
    "  push qword ptr [rip + case_data + 88]\n"
    "  pop qword ptr [rip + case_data + 80]\n"
    "  pop word ptr [rip + case_data + 80]\n"
    "END riprel_store\n"

    "CASE riprel_lea\n"
    "  lea rax, [rip + case_data]\n"
    "  lea r15, [rip + case_data + 0x100]\n"
    "  lea esi, [rip + landing_pad]\n"
    "  lea rdi, [rip - 0x10000]\n"
    "  lea rsp, [rip + case_data + 0x40]\n"
    "END riprel_lea\n"

    "CASE riprel_cmp\n"
    "  cmp qword ptr [rip + case_data], 0\n"
    "  cmp qword ptr [rip + case_data], rax\n"
    "  cmp r8d, dword ptr [rip + case_data + 4]\n"
    "  cmp byte ptr [rip + case_data + 1], 0x41\n"
    "  cmp dword ptr [rip + case_data + 4], 0x12345678\n"
    "  cmp word ptr [rip + case_data + 2], 0x4321\n"
    "  test dword ptr [rip + case_data], eax\n"
    "  test byte ptr [rip + case_data + 2], 0x80\n"
    "  bt dword ptr [rip + case_data], 5\n"
    "  bts qword ptr [rip + case_data], 63\n"
    "END riprel_cmp\n"

    "CASE riprel_sse\n"
    "  movsd xmm0, qword ptr [rip + case_data]\n"
    "  movss xmm7, dword ptr [rip + case_data + 4]\n"
    "  movaps xmm1, xmmword ptr [rip + case_data]\n"
    "  movups xmmword ptr [rip + case_data + 16], xmm2\n"
    "  movdqa xmmword ptr [rip + case_data + 64], xmm14\n"
    "  addpd xmm3, xmmword ptr [rip + case_data + 32]\n"
    "  pshufb xmm4, xmmword ptr [rip + case_data + 48]\n"
    "  pcmpeqb xmm8, xmmword ptr [rip + case_data]\n"
    "  cvtsi2sd xmm0, qword ptr [rip + case_data]\n"
    "  cvttsd2si rax, qword ptr [rip + case_data + 8]\n"
    "  roundsd xmm5, qword ptr [rip + case_data], 4\n"
    "  pinsrw xmm2, word ptr [rip + case_data + 10], 3\n"
    "  pextrd dword ptr [rip + case_data + 12], xmm6, 1\n"
    "  ucomisd xmm0, qword ptr [rip + case_data]\n"
    "  movq xmm9, qword ptr [rip + case_data]\n"
    "  pcmpistri xmm1, xmmword ptr [rip + case_data + 16], 0x0c\n"
    "  ldmxcsr dword ptr [rip + case_mxcsr]\n"
    "  stmxcsr dword ptr [rip + case_data + 16]\n"
    "END riprel_sse\n"

    "CASE riprel_x87\n"
    "  fld qword ptr [rip + case_data]\n"
    "  fild dword ptr [rip + case_data + 4]\n"
    "  fnstcw word ptr [rip + case_data + 8]\n"
    "  fldcw word ptr [rip + case_fcw]\n"
    "END riprel_x87\n"

    // The scratch register must be one the instruction does not touch, implicit operands included:
    // rax/rdx for div, mul and cmpxchg, rdx for mulx, edx:eax as the xsave mask, VEX.vvvv.
    "CASE riprel_implicit\n"
    "  cmpxchg qword ptr [rip + case_data], rcx\n"
    "  cmpxchg16b xmmword ptr [rip + case_data]\n"
    "  cmpxchg8b qword ptr [rip + case_data + 16]\n"
    "  div qword ptr [rip + case_data]\n"
    "  idiv dword ptr [rip + case_data + 8]\n"
    "  imul qword ptr [rip + case_data]\n"
    "  mul dword ptr [rip + case_data + 4]\n"
    "  mulx rax, rbx, qword ptr [rip + case_data]\n"
    "  andn rax, rbx, qword ptr [rip + case_data]\n"
    "  shlx rax, qword ptr [rip + case_data], rcx\n"
    "  bextr rdx, qword ptr [rip + case_data], rsi\n"
    "  pdep rcx, rbx, qword ptr [rip + case_data]\n"
    "  xsave [rip + case_xsave_area]\n"
    "  xsaveopt [rip + case_xsave_area]\n"
    "  fxsave [rip + case_xsave_area]\n"
    "  shl qword ptr [rip + case_data + 8], cl\n"
    "  shld qword ptr [rip + case_data + 8], rdx, cl\n"
    "END riprel_implicit\n"

    "CASE riprel_lock\n"
    "  lock add dword ptr [rip + case_data], eax\n"
    "  lock add qword ptr [rip + case_data], r8\n"
    "  lock xadd qword ptr [rip + case_data + 8], rcx\n"
    "  lock cmpxchg qword ptr [rip + case_data + 16], rdx\n"
    "  lock cmpxchg16b xmmword ptr [rip + case_data + 32]\n"
    "  lock inc qword ptr [rip + case_data + 24]\n"
    "  lock dec dword ptr [rip + case_data + 24]\n"
    "  lock or byte ptr [rip + case_data + 32], 1\n"
    "  lock and qword ptr [rip + case_data + 40], 0x7f\n"
    "  lock bts qword ptr [rip + case_data], 3\n"
    "  lock btr dword ptr [rip + case_data], 4\n"
    "  lock not qword ptr [rip + case_data + 48]\n"
    "END riprel_lock\n"

    // VEX: two-byte (c5: no B bit; R̄ and vvvv only), three-byte (c4: B̄ must be set for [tmp]).
    "CASE riprel_vex\n"
    "  vmovdqa ymm0, ymmword ptr [rip + case_data]\n"
    "  vmovdqu ymm8, ymmword ptr [rip + case_data]\n"
    "  vmovups ymmword ptr [rip + case_data + 32], ymm3\n"
    "  vpaddd ymm1, ymm2, ymmword ptr [rip + case_data]\n"
    "  vpxor xmm15, xmm15, xmmword ptr [rip + case_data]\n"
    "  {vex3} vpaddq ymm12, ymm13, ymmword ptr [rip + case_data]\n"
    "  vbroadcastss ymm3, dword ptr [rip + case_data]\n"
    "  vpbroadcastq ymm0, qword ptr [rip + case_data]\n"
    "  vfmadd231pd ymm1, ymm2, ymmword ptr [rip + case_data]\n"
    "  vpermq ymm0, ymmword ptr [rip + case_data], 0x1b\n"
    "  vmovq xmm9, qword ptr [rip + case_data]\n"
    "  vcvtsi2sd xmm0, xmm0, qword ptr [rip + case_data]\n"
    "  vpinsrq xmm10, xmm11, qword ptr [rip + case_data], 1\n"
    "  vmaskmovps ymm0, ymm1, ymmword ptr [rip + case_data]\n"
    "  vmaskmovps ymmword ptr [rip + case_data + 64], ymm1, ymm2\n"
    "  vpcmpestri xmm1, xmmword ptr [rip + case_data], 0x0c\n"
    "  vtestps ymm4, ymmword ptr [rip + case_data]\n"
    "END riprel_vex\n"

    // EVEX (AVX-512): P0 = R̄ X̄ B̄ R̄' 0 m m m; [tmp] needs B̄ set. disp32 is never scaled (only a
    // disp8 is, by N), so mod 00 -> 10 keeps the displacement as it is.
    "CASE riprel_evex\n"
    "  vmovdqu64 zmm0, zmmword ptr [rip + case_data]\n"
    "  vmovdqu64 zmmword ptr [rip + case_data + 64], zmm2\n"
    "  vmovdqu32 zmm1{k1}, zmmword ptr [rip + case_data]\n"
    "  vmovdqu32 zmm1{k1}{z}, zmmword ptr [rip + case_data]\n"
    "  vpaddd zmm16, zmm17, zmmword ptr [rip + case_data]\n"
    "  vpaddd zmm0, zmm1, dword ptr [rip + case_data]{1to16}\n"
    "  vaddpd zmm4, zmm5, qword ptr [rip + case_data]{1to8}\n"
    "  {evex} vpaddq xmm20, xmm21, xmmword ptr [rip + case_data]\n"
    "  vmovups zmm31, zmmword ptr [rip + case_data]\n"
    "  vpcmpeqd k2, zmm3, zmmword ptr [rip + case_data]\n"
    "  vpshufd zmm6, zmmword ptr [rip + case_data], 0x1b\n"
    "  vpermq zmm0, zmmword ptr [rip + case_data], 0x1b\n"
    "  vpcmpd k1, zmm0, zmmword ptr [rip + case_data], 2\n"
    "  vpcompressd zmmword ptr [rip + case_data + 128]{k1}, zmm8\n"
    "  vpbroadcastd zmm9, dword ptr [rip + case_data]\n"
    "  kmovw k3, word ptr [rip + case_data]\n"
    "END riprel_evex\n"

    // A RIP-relative operand ignores REX.B / VEX.B̄ / EVEX.B̄ (and X), so an encoder may set them; as
    // [tmp + disp] they pick the base register, so the rewrite must clear them. Assemblers never emit
    // these: spelled out in bytes. (Capstone 4 does not decode an EVEX one with X̄ = 0.)
    "CASE riprel_bbit\n"
    "  .byte 0x41, 0x8b, 0x05\n .long case_data + 8 - . - 4\n"                // mov eax, [rip+x], REX.B
    "  .byte 0x49, 0x8b, 0x0d\n .long case_data + 16 - . - 4\n"               // mov rcx, [rip+x], REX.WB
    "  .byte 0x4b, 0x89, 0x05\n .long case_data + 24 - . - 4\n"               // mov [rip+x], rax, REX.WXB
    "  .byte 0xc4, 0xc1, 0x7d, 0x6f, 0x05\n .long case_data - . - 4\n"        // vmovdqa ymm0, [rip+x], VEX3 B̄=0
    "  .byte 0xc4, 0x81, 0x7d, 0x6f, 0x0d\n .long case_data - . - 4\n"        // vmovdqa ymm1, [rip+x], VEX3 X̄=B̄=0
    "  .byte 0x62, 0xd1, 0xfe, 0x48, 0x6f, 0x05\n .long case_data - . - 4\n"  // vmovdqu64 zmm0, [rip+x], EVEX B̄=0
    "END riprel_bbit\n"

    "CASE flow_rel8\n"
    "  jmp 1f\n"
    "  jo 1f\n  jno 1f\n  jb 1f\n  jae 1f\n  je 1f\n  jne 1f\n  jbe 1f\n  ja 1f\n"
    "  js 1f\n  jns 1f\n  jp 1f\n  jnp 1f\n  jl 1f\n  jge 1f\n  jle 1f\n  jg 1f\n"
    "  jmp case_flow_rel8\n"
    "1:\n"
    "END flow_rel8\n"

    "CASE flow_rel32\n"
    "  {disp32} jmp 1f\n"
    "  {disp32} jo 1f\n  {disp32} jno 1f\n  {disp32} jb 1f\n  {disp32} jae 1f\n"
    "  {disp32} je 1f\n  {disp32} jne 1f\n  {disp32} jbe 1f\n  {disp32} ja 1f\n"
    "  {disp32} js 1f\n  {disp32} jns 1f\n  {disp32} jp 1f\n  {disp32} jnp 1f\n"
    "  {disp32} jl 1f\n  {disp32} jge 1f\n  {disp32} jle 1f\n  {disp32} jg 1f\n"
    "  {disp32} jne case_flow_rel32\n"
    "  jmp landing_pad\n"
    "1:\n"
    "END flow_rel32\n"

    "CASE flow_call\n"
    "  call landing_pad\n"
    "  call case_flow_call\n"
    "  call qword ptr [rip + case_pointer]\n"
    "  jmp qword ptr [rip + case_pointer]\n"
    "  call rax\n"
    "  call r11\n"
    "  jmp rax\n"
    "  jmp r15\n"
    "  call qword ptr [rax + 8]\n"
    "  call qword ptr [r13]\n"
    "  jmp qword ptr [rbx + rcx*8 + 0x10]\n"
    "  jmp qword ptr [r12 + r9*4 - 8]\n"
    "  call qword ptr [rsp + 8]\n"
    "  call qword ptr [rsp]\n"
    "  jmp qword ptr [rsp]\n"
    "  call rsp\n"
    "  jmp qword ptr fs:[0]\n"
    "  call qword ptr fs:[0x10]\n"
    "  call qword ptr [eax + 16]\n"
    "  .byte 0x3e, 0xff, 0xe0\n"              // notrack jmp rax
    "  .byte 0x3e, 0xff, 0x14, 0xc3\n"        // notrack call [rbx + rax*8]
    "  .byte 0xf2, 0xff, 0x25\n .long case_pointer - . - 4\n"  // bnd jmp [rip + case_pointer]
    "  .byte 0xf2, 0xe8\n .long landing_pad - . - 4\n"           // bnd call landing_pad
    "END flow_call\n"

    "CASE flow_ret\n"
    "  ret\n"
    "  ret 16\n"
    "  ret 0\n"
    "  .byte 0xf3, 0xc3\n"   // repz ret (AMD's branch-predictor idiom)
    "  .byte 0xf2, 0xc3\n"   // bnd ret
    "END flow_ret\n"

    // loop counts in RCX (ECX with an address-size prefix); jrcxz tests RCX, jecxz ECX.
    "CASE flow_loop\n"
    "  loop 1f\n"
    "  loope 1f\n"
    "  loopne 1f\n"
    "  jrcxz 1f\n"
    "  .byte 0x67, 0xe3, 0x02\n"   // jecxz
    "  .byte 0x67, 0xe2, 0xfe\n"   // loopd, back to itself
    "  .byte 0x67, 0xe1, 0x00\n"   // looped
    "1:\n"
    "END flow_loop\n"

    // Emulated, or copied as they are.
    "CASE flow_push\n"
    "  push rbx\n"
    "  push r12\n"
    "  push rbp\n"
    "  push rsp\n"
    "  push r15\n"
    "END flow_push\n"

    "CASE flow_nop\n"
    "  endbr64\n"
    "  nop\n"
    "  nop dword ptr [rax + rax]\n"
    "  .byte 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00\n"  // cs nop word ptr [rax+rax]
    "  xchg ax, ax\n"
    "END flow_nop\n"

    // Nothing in these depends on where they run.
    "CASE plain\n"
    "  push 0x12\n"
    "  push -1\n"
    "  push word ptr [rax]\n"
    "  push qword ptr [rax + 8]\n"
    "  pushfq\n"
    "  popfq\n"
    "  pop rbx\n"
    "  pop rsp\n"
    "  mov rax, qword ptr fs:[0x28]\n"
    "  mov qword ptr fs:[0x30], rdx\n"
    "  lea rax, [rax + rbx*8 + 0x10]\n"
    "  mov rax, qword ptr [rbx + rcx*8 + 0x10]\n"
    "  mov dword ptr [rsp + 12], 0x11223344\n"
    "  sub rsp, 0x88\n"
    "  leave\n"
    "  enter 16, 0\n"
    "  bt qword ptr [rax], rcx\n"
    "  movaps xmmword ptr [rsp], xmm0\n"
    "  vmovdqu ymm0, ymmword ptr [rdi]\n"
    "  vpcmpgtd k1, zmm0, zmmword ptr [rsi]\n"
    "  rep stosb\n"
    "  rep movsq\n"
    "  repne scasb\n"
    "  lodsb\n"
    "  cpuid\n"
    "  rdtsc\n"
    "  xgetbv\n"
    "  ud2\n"
    "  xor eax, eax\n"
    "  div rcx\n"
    "  vzeroupper\n"
    "END plain\n"

    // In a trampoline only: a clone made from a per-thread step slot would start its thread there.
    "CASE syscall\n"
    "  syscall\n"
    "END syscall\n"

    // Instructions Capstone 4 does not decode (AVX-512 forms glibc's *_evex string functions use):
    // the Relocator has nothing to plan, and the engine refuses the site. One per case, since the
    // oracle cannot tell where an undecodable instruction ends.
    "CASE undecodable_vpternlogd\n"
    "  vpternlogd zmm6, zmm7, zmmword ptr [rip + case_data], 0x96\n"
    "END undecodable_vpternlogd\n"
    "CASE undecodable_vpcmpeqb\n"
    "  vpcmpeqb k1, zmm0, zmmword ptr [rsi]\n"
    "END undecodable_vpcmpeqb\n"
    "CASE undecodable_kortestd\n"
    "  kortestd k0, k1\n"
    "END undecodable_kortestd\n"

    "CASE refuse\n"
    "  int3\n"
    "  int 0x80\n"
    "  hlt\n"
    "  mov rax, qword ptr [eip + case_data]\n"
    "  xbegin 1f\n"
    "  .byte 0x66, 0xeb, 0x00\n"   // jmp rel8 with an operand-size prefix
    "  .byte 0x66, 0xc3\n"         // ret with an operand-size prefix
    "  sysenter\n"
    "  mov ss, ax\n"
    "  iretq\n"
    "  .byte 0xcb\n"   // retf
    "1:\n"
    "END refuse\n"

    ".data\n"
    "case_mxcsr: .long 0x1f80 | 0x6000\n"   // round toward zero
    "case_fcw: .word 0x037f & ~0x0300\n"   // single precision
    ".text\n"
    ".att_syntax prefix\n");
