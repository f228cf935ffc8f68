// Functions of every argument shape the tracer reads — integers, C strings, doubles and floats, more
// arguments than registers (on the stack), a returned string, a struct by value — called by several
// threads, for comparing what two strategies report; and a tiny hot function for the ring's limits.
//
// Usage:
//   values calls THREADS ROUNDS   each thread makes ROUNDS rounds of calls to every vx_ function
//   values hot THREADS CALLS      each thread calls vx_hot CALLS times, as fast as it can
//   values gate THREADS CALLS     a batch of `hot` calls at each SIGUSR1, until SIGTERM
// Prints its own ground truth ("calls NAME N") and "wrong N", the results that were not right.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vx_pair { long a; long b; };

__attribute__((noinline, noipa)) long vx_ints(int a, long b, unsigned c, char d) { return a + b + c + d; }

__attribute__((noinline, noipa)) long vx_strings(const char *s, const char *t) {
    return (long)strlen(s) * 100 + (long)strlen(t);
}

__attribute__((noinline, noipa)) double vx_floats(double x, float y, double z) { return x * y + z; }

__attribute__((noinline, noipa)) long vx_many(long a, long b, long c, long d, long e, long f, long g, long h,
                                              const char *tag) {
    return a + b + c + d + e + f + g + h + tag[0];
}

__attribute__((noinline, noipa)) const char *vx_name(int i) {
    static const char *names[] = {"zero", "one", "two", "three"};
    return names[i & 3];
}

__attribute__((noinline, noipa)) long vx_pair_sum(struct vx_pair p) { return p.a - p.b; }

__attribute__((noinline, noipa)) long vx_hot(long x) { return x + 1; }

// A tail call (jmp to vx_leaf): vx_tail returns when vx_leaf does.
__attribute__((noinline, noipa)) long vx_leaf(long x) { return x * 3 + 1; }
__attribute__((noinline, noipa, optimize("optimize-sibling-calls"))) long vx_tail(long x) {
    if (x < 0) return 0;
    return vx_leaf(x + 1);
}

static long rounds = 100;
static atomic_long wrong;

static void *caller(void *arg) {
    long id = (long)arg;
    static const char *words[] = {"alpha", "be\"ta", "gamma\n", ""};
    for (long i = 0; i < rounds; i++) {
        long k = i % 7;
        if (vx_ints((int)k, id, 3u, 'x') != k + id + 3 + 'x') atomic_fetch_add(&wrong, 1);
        const char *s = words[i & 3], *t = words[(i + id) & 3];
        if (vx_strings(s, t) != (long)strlen(s) * 100 + (long)strlen(t)) atomic_fetch_add(&wrong, 1);
        if (vx_floats(0.5 * (double)k, 2.0f, 1.25) != (double)k + 1.25) atomic_fetch_add(&wrong, 1);
        if (vx_many(1, 2, 3, 4, 5, 6, k, id, "many") != 21 + k + id + 'm') atomic_fetch_add(&wrong, 1);
        if (strcmp(vx_name((int)k), ((const char *[]){"zero", "one", "two", "three"})[k & 3]) != 0) atomic_fetch_add(&wrong, 1);
        if (vx_pair_sum((struct vx_pair){k * 10, id}) != k * 10 - id) atomic_fetch_add(&wrong, 1);
        if (vx_tail(k) != 3 * (k + 1) + 1) atomic_fetch_add(&wrong, 1);
    }
    return NULL;
}

static long hot_calls = 1000;

static void *hammer(void *arg) {
    (void)arg;
    for (long i = 0; i < hot_calls; i++)
        if (vx_hot(i) != i + 1) atomic_fetch_add(&wrong, 1);
    return NULL;
}

static void run_threads(int threads, void *(*body)(void *)) {
    pthread_t ids[64];
    if (threads > 64) threads = 64;
    for (long t = 0; t < threads; t++) pthread_create(&ids[t], NULL, body, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "calls";
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    long count = argc > 3 ? atol(argv[3]) : 100;
    if (strcmp(mode, "calls") == 0) {
        rounds = count;
        run_threads(threads, caller);
        const char *names[] = {"vx_ints", "vx_strings", "vx_floats", "vx_many", "vx_name", "vx_pair_sum", "vx_tail", "vx_leaf"};
        for (int i = 0; i < 8; i++) printf("calls %s %ld\n", names[i], threads * rounds);
    } else if (strcmp(mode, "hot") == 0) {
        hot_calls = count;
        run_threads(threads, hammer);
        printf("calls vx_hot %ld\n", threads * hot_calls);
    } else {
        hot_calls = count;
        long batches = 0;
        sigset_t gate;
        sigemptyset(&gate);
        sigaddset(&gate, SIGUSR1);
        sigaddset(&gate, SIGTERM);
        sigprocmask(SIG_BLOCK, &gate, NULL);
        printf("ready\n");
        fflush(stdout);
        int sig = 0;
        while (sigwait(&gate, &sig) == 0 && sig == SIGUSR1) {
            run_threads(threads, hammer);
            batches++;
            printf("batch %ld done\n", batches);
            fflush(stdout);
        }
        printf("calls vx_hot %ld\n", batches * threads * hot_calls);
    }
    printf("wrong %ld\n", (long)atomic_load(&wrong));
    return 0;
}
