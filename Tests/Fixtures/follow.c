// A call tree for --follow-calls, printed as the program runs it. Each of THREADS threads calls, ROUNDS
// times:
//   fw_handle(i, "name")   the root:  strlen (libc, through the PLT)           depth 1
//                                     fw_step1 -> fw_step2 -> fw_step3 -> fw_step4   depths 1-4
//                                     fw_on_item, through a function pointer      depth 1
//   fw_outside(i)          not a root: fw_step1 … fw_step4 and fw_on_item again, which are not to be shown
// then the main thread calls fw_start once, which calls fw_rec(5, 5): delve's leafrec, a function
// that calls itself (5 * 4 * 3 * 2 * 1 = 120).
// Usage: follow THREADS ROUNDS [wait]. Prints how many calls of each it made, and `wrong 0` when every
// result was the expected one. With `wait`: prints "ready" and waits for SIGUSR1 (a tracer attaches
// meanwhile), runs, prints "done", and waits for SIGUSR1 again (so the tracer can detach from a live
// process).
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline, noipa))

static int rounds;
static long wrong;

NOINLINE long fw_step4(long x) { return x * 2; }
NOINLINE long fw_step3(long x) { return fw_step4(x) + 1; }
NOINLINE long fw_step2(long x) { return fw_step3(x) + 1; }
NOINLINE long fw_step1(long x) { return fw_step2(x) + 1; }
NOINLINE long fw_on_item(long x) { return x + 100; }

// Read through a volatile pointer: the call is `call *reg`, its target known only when it runs.
long (*volatile fw_callback)(long) = fw_on_item;

NOINLINE long fw_handle(long x, const char *name) {
    long n = (long)strlen(name);
    return fw_step1(x) + fw_callback(n);
}

NOINLINE long fw_outside(long x) { return fw_step1(x) + fw_callback(x); }

NOINLINE long fw_rec(long i, long n) {
    if (n == 1) return i;
    n--;
    return i * fw_rec(i - 1, n);
}

NOINLINE long fw_start(void) { return fw_rec(5, 5); }

static void *worker(void *arg) {
    long base = (long)arg;
    for (int r = 0; r < rounds; r++) {
        long x = base + r;
        // fw_step1(x) = 2x + 3, fw_on_item(n) = n + 100
        if (fw_handle(x, "name") != 2 * x + 3 + 104) __atomic_fetch_add(&wrong, 1, __ATOMIC_RELAXED);
        if (fw_outside(x) != 2 * x + 3 + x + 100) __atomic_fetch_add(&wrong, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void wait_for_usr1(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int signal;
    sigwait(&set, &signal);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    rounds = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1 || threads > 64) threads = 1;
    int waits = argc > 3 && strcmp(argv[3], "wait") == 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (waits) {
        printf("ready\n");
        fflush(stdout);
        wait_for_usr1();
    }
    pthread_t t[64];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(long)(i * 1000));
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    long calls = (long)threads * rounds;
    printf("calls fw_handle %ld\n", calls);
    printf("calls fw_outside %ld\n", calls);
    long rec = fw_start();
    printf("fw_rec(5, 5) = %ld\n", rec);
    if (rec != 120) wrong++;
    printf("wrong %ld\ndone\n", wrong);
    fflush(stdout);
    if (waits) wait_for_usr1();
    return 0;
}
