// Functions whose first instruction one strategy can run elsewhere and another cannot: a `syscall`
// first is refused by the step strategy (a clone would start the new thread in the step slot), not by
// the others. `nstrace list --strategy S` and a trace with S must say the same of each.
//
// Usage: entries [ROUNDS]. Prints how many calls it made to each function.
#include <stdio.h>
#include <stdlib.h>

long ent_starts_with_syscall(void);  // getpid, with RAX set by the caller
asm(".text\n.globl ent_starts_with_syscall\n.type ent_starts_with_syscall,@function\n"
    "ent_starts_with_syscall:\n  syscall\n  ret\n"
    ".size ent_starts_with_syscall, .-ent_starts_with_syscall\n");

__attribute__((noinline)) long ent_plain(long x) {
    asm volatile("" ::: "memory");
    return x + 1;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 10;
    long sum = 0;
    for (long i = 0; i < rounds; i++) {
        long pid;
        asm volatile("mov $39, %%eax\n\tcall ent_starts_with_syscall" : "=a"(pid) : : "rcx", "r11", "memory");
        sum += pid > 0;
        sum += ent_plain(i) == i + 1;
    }
    printf("calls ent_starts_with_syscall %ld\ncalls ent_plain %ld\nwrong results %ld\n", rounds, rounds, 2 * rounds - sum);
    return 0;
}
