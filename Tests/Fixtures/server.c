// A long-running "server" for attach tests: worker threads call traced functions in a loop and check
// every result; a churn thread creates and joins short-lived threads without pause (with "churn").
// Prints "ready" once running, then "tick N calls=C" about every 50 ms. On a wrong result it prints
// "BAD" and exits 1, so a test sees at once if a tracer corrupted it.
//
// Usage: server [THREADS] [churn]
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_long total_calls;

__attribute__((noinline, noipa)) long srv_handle(long request, const char *tag) {
    return request * 2 + (tag[0] == 'r');
}

__attribute__((noinline, noipa)) long srv_helper(long x) { return x ^ 0x5a5a; }

__attribute__((noinline, noipa)) long srv_short_lived(long x) { return x + 7; }

static void check(int ok) {
    if (!ok) {
        printf("BAD\n");
        fflush(stdout);
        exit(1);
    }
}

static void *worker(void *arg) {
    long id = (long)arg;
    for (long i = 0;; i++) {
        check(srv_handle(i, "req") == i * 2 + 1);
        check(srv_helper(i + id) == ((i + id) ^ 0x5a5a));
        atomic_fetch_add(&total_calls, 2);
        if ((i & 63) == 0) usleep(100);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    long x = (long)arg;
    check(srv_short_lived(x) == x + 7);
    return NULL;
}

static void *churn(void *arg) {
    (void)arg;
    for (long i = 0;; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, (void *)i) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    int with_churn = argc > 2 && strcmp(argv[2], "churn") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 0; i < threads; i++) {
        pthread_t t;
        pthread_create(&t, NULL, worker, (void *)i);
    }
    if (with_churn) {
        pthread_t t;
        pthread_create(&t, NULL, churn, NULL);
    }
    printf("ready pid %d\n", getpid());
    for (long tick = 0;; tick++) {
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
        printf("tick %ld calls=%ld\n", tick, atomic_load(&total_calls));
    }
}
