// A call tree known in advance, for nstrace's filters and folded stacks. Each round, fl_root calls:
//   fl_mid                  -> fl_leaf x2
//   fl_skip -> fl_mid       -> fl_leaf x2
//   fl_slow (sleeps SLEEP_MS) -> fl_leaf
//   fl_lib_apply (in filters_lib, a shared library) -> fl_leaf x3, called from the library
// Usage: filters ROUNDS SLEEP_MS [DEEP]. Prints its own call counts and fl_root's results. With DEEP,
// then calls fl_deep DEEP+1 levels deep, the outermost sleeping SLEEP_MS after the others returned.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

long fl_lib_apply(long (*fn)(long), long n);

static long leaves, mids;

__attribute__((noinline, noipa)) long fl_leaf(long x) {
    leaves++;
    return x + 1;
}

__attribute__((noinline, noipa)) long fl_mid(long x) {
    mids++;
    return fl_leaf(x) + fl_leaf(x + 1);
}

__attribute__((noinline, noipa)) long fl_skip(long x) { return fl_mid(x) * 2; }

__attribute__((noinline, noipa)) long fl_slow(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
    return fl_leaf(ms);
}

__attribute__((noinline, noipa)) long fl_deep(long n, long ms) {
    long depth = n > 0 ? fl_deep(n - 1, 0) + 1 : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return depth;
}

__attribute__((noinline, noipa)) long fl_root(long r, long ms) {
    long sum = fl_mid(r);
    sum += fl_skip(r);
    sum += fl_slow(ms);
    sum += fl_lib_apply(fl_leaf, 3);
    return sum;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    long ms = argc > 2 ? atol(argv[2]) : 0;
    int wrong = 0;
    for (int r = 0; r < rounds; r++) {
        long got = fl_root(r, ms);
        printf("fl_root %d = %ld\n", r, got);
        wrong += got != 6L * r + ms + 16;
    }
    if (argc > 3) printf("calls fl_deep %ld\n", fl_deep(atol(argv[3]), ms) + 1);
    printf("calls fl_root %d\n", rounds);
    printf("calls fl_mid %ld\n", mids);
    printf("calls fl_leaf %ld\n", leaves);
    printf("wrong %d\n", wrong);
    return wrong != 0;
}
