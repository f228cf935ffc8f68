// One function called every millisecond, on and on, with the count of calls printed every 100: a
// target another tracer (bpftrace's uprobes) can probe while nstrace traces it.
//
// Usage: probed. Prints "ready", then "calls pr_work N" lines.
#include <stdio.h>
#include <time.h>

__attribute__((noinline)) long pr_work(long x) {
    asm volatile("" ::: "memory");
    return x * 3;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    struct timespec pause = {0, 1000 * 1000};
    long wrong = 0;
    for (long i = 1;; i++) {
        if (pr_work(i) != 3 * i) wrong++;
        if (i % 100 == 0) printf("calls pr_work %ld%s\n", i, wrong ? " BAD" : "");
        nanosleep(&pause, NULL);
    }
}
