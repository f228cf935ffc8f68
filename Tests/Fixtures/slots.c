// Threads calling one traced function as fast as they can while a signal storm runs a handler that
// calls another: under the jump strategy a signal can land while a trap pad is writing its thread's
// stop slot, and the handler's own call then meets the slot its thread still holds.
//
// Usage: slots THREADS CALLS. Thread t calls sl_work(i, t) for i in 0..<CALLS (it returns i + t);
// every SIGUSR1 runs sl_in_handler(7) (it returns 14). Prints its own counts:
//   calls sl_work N / calls sl_in_handler M / wrong W
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline, noipa)) long sl_work(long i, long t) { return i + t; }
__attribute__((noinline, noipa)) long sl_in_handler(long x) { return 2 * x; }

static long calls = 1000;
static atomic_long made_work, made_handler, wrong;
static atomic_int running;
static pthread_t workers[64];
static int nworkers = 4;

static void on_usr1(int sig) {
    (void)sig;
    if (sl_in_handler(7) != 14) atomic_fetch_add(&wrong, 1);
    atomic_fetch_add(&made_handler, 1);
}

static void *worker(void *arg) {
    long t = (long)arg;
    for (long i = 0; i < calls; i++) {
        if (sl_work(i, t) != i + t) atomic_fetch_add(&wrong, 1);
        atomic_fetch_add(&made_work, 1);
    }
    atomic_fetch_sub(&running, 1);
    return NULL;
}

// A round of signals, one to each worker, then a wait until the workers have made a few more calls
// (at most 100 ms): signals never come faster than a traced program gets on with its work.
static void *signaller(void *arg) {
    (void)arg;
    struct timespec pause = {0, 20 * 1000};
    while (atomic_load(&running) > 0) {
        long before = atomic_load(&made_work);
        for (int i = 0; i < nworkers; i++) pthread_kill(workers[i], SIGUSR1);
        for (int waited = 0; waited < 5000 && atomic_load(&running) > 0 && atomic_load(&made_work) < before + 2 * nworkers; waited++)
            nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) nworkers = atoi(argv[1]);
    if (argc > 2) calls = atol(argv[2]);
    if (nworkers < 1 || nworkers > 64 || calls < 1) return 2;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    atomic_store(&running, nworkers);
    for (long t = 0; t < nworkers; t++) pthread_create(&workers[t], NULL, worker, (void *)t);
    pthread_t sender;
    pthread_create(&sender, NULL, signaller, NULL);
    pthread_join(sender, NULL);
    for (int t = 0; t < nworkers; t++) pthread_join(workers[t], NULL);
    printf("calls sl_work %ld\n", atomic_load(&made_work));
    printf("calls sl_in_handler %ld\n", atomic_load(&made_handler));
    printf("wrong %ld\n", atomic_load(&wrong));
    return atomic_load(&wrong) == 0 ? 0 : 1;
}
