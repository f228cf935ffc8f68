// Traced calls left open on one stack while the thread runs on another: two ucontext fibers on stacks
// of their own, and a signal handler on a sigaltstack, all in one mapping split by PROT_NONE guard
// pages (so the stacks are separate mappings, close together, each above the last). Then a loop of
// calls made from anonymous memory (a JIT stub), whose returns no breakpoint can watch: each call
// enters at the same stack pointer as the last.
//
// Usage: fibers [ROUNDS]. Prints how many calls it made to each traced function.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define STACK (256 * 1024)
#define GUARD 4096

static ucontext_t main_ctx, ctx_a, ctx_b;
static long rounds = 100;
static long calls_leaf, calls_a, calls_b, calls_handler, calls_jit, wrong;

__attribute__((noinline)) long fib_leaf(long x) {
    calls_leaf++;
    asm volatile("" ::: "memory");
    return x + 1;
}

__attribute__((noinline)) long fib_in_handler(long x) {
    calls_handler++;
    asm volatile("" ::: "memory");
    return x * 2;
}

static void on_usr1(int sig) {
    if (fib_in_handler(sig) != 2 * sig) wrong++;
}

// On fiber A: open while the thread runs fiber B, and while a handler runs on the sigaltstack.
__attribute__((noinline)) long fib_work_a(long round) {
    calls_a++;
    long r = fib_leaf(round);
    raise(SIGUSR1);
    swapcontext(&ctx_a, &ctx_b);
    return r + fib_leaf(round);
}

// On fiber B: open while the thread runs fiber A.
__attribute__((noinline)) long fib_work_b(long round) {
    calls_b++;
    long r = fib_leaf(round);
    swapcontext(&ctx_b, &ctx_a);
    return r;
}

static void fiber_a(void) {
    for (long i = 0; i < rounds; i++)
        if (fib_work_a(i) != 2 * (i + 1)) wrong++;
    swapcontext(&ctx_a, &ctx_b);  // B's last call returns, then B goes back to main
}

static void fiber_b(void) {
    for (long i = 0; i < rounds; i++)
        if (fib_work_b(i) != i + 1) wrong++;
    setcontext(&main_ctx);
}

__attribute__((noinline)) long fib_jit_target(long x) {
    calls_jit++;
    asm volatile("" ::: "memory");
    return x + 3;
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atol(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);

    // [guard][A][guard][B][guard][sigaltstack], each guard PROT_NONE: four separate mappings.
    size_t total = 3 * (GUARD + STACK);
    uint8_t *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 2;
    for (int i = 0; i < 3; i++) mprotect(base + i * (GUARD + STACK), GUARD, PROT_NONE);
    uint8_t *stack_a = base + GUARD, *stack_b = base + 2 * GUARD + STACK, *alt = base + 3 * GUARD + 2 * STACK;

    stack_t ss = {.ss_sp = alt, .ss_size = STACK, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);

    getcontext(&ctx_a);
    ctx_a.uc_stack.ss_sp = stack_a;
    ctx_a.uc_stack.ss_size = STACK;
    ctx_a.uc_link = &main_ctx;
    makecontext(&ctx_a, fiber_a, 0);
    getcontext(&ctx_b);
    ctx_b.uc_stack.ss_sp = stack_b;
    ctx_b.uc_stack.ss_size = STACK;
    ctx_b.uc_link = &main_ctx;
    makecontext(&ctx_b, fiber_b, 0);
    swapcontext(&main_ctx, &ctx_a);

    // A stub in anonymous memory calls fib_jit_target: sub rsp,8; mov rax,imm64; call rax; add rsp,8; ret
    uint8_t *stub = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stub == MAP_FAILED) return 2;
    uint8_t code[] = {0x48, 0x83, 0xec, 0x08, 0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3};
    uint64_t target = (uint64_t)(uintptr_t)fib_jit_target;
    memcpy(code + 6, &target, 8);
    memcpy(stub, code, sizeof code);
    long (*jit)(long) = (long (*)(long))(void *)stub;
    for (long i = 0; i < 10 * rounds; i++)
        if (jit(i) != i + 3) wrong++;

    printf("calls fib_leaf %ld\n", calls_leaf);
    printf("calls fib_work_a %ld\n", calls_a);
    printf("calls fib_work_b %ld\n", calls_b);
    printf("calls fib_in_handler %ld\n", calls_handler);
    printf("calls fib_jit_target %ld\n", calls_jit);
    printf("wrong results %ld\n", wrong);
    return wrong != 0;
}
