// A server under a seccomp filter that kills it for an executable mmap (as a sandbox may): a tracer
// must not inject one. Every other system call is allowed.
//
// Usage: seccomp. Prints "ready", then "tick N" every 100 calls of sc_work (one a millisecond).
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long sc_work(long x) {
    asm volatile("" ::: "memory");
    return x + 7;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) {
        perror("seccomp");
        return 2;
    }
    printf("ready\n");
    struct timespec pause = {0, 1000 * 1000};
    long wrong = 0;
    for (long i = 1;; i++) {
        if (sc_work(i) != i + 7) wrong++;
        if (i % 100 == 0) printf("tick %ld%s\n", i, wrong ? " BAD" : "");
        nanosleep(&pause, NULL);
    }
}
