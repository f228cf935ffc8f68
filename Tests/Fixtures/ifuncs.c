// Calls strcmp, memcpy and memset — GNU indirect functions in glibc — CALLS times each from THREADS
// threads, with arguments only this program passes (strings "ifx-…", fill byte 'Z', sources in
// `sources`), so that a test can tell its calls from libc's own calls of the same implementations.
// Prints its ground truth: counts, and the sums of what strcmp returned and of the sizes passed.
// With the argument `wait`, it says `ready` and makes its calls only once a SIGUSR1 comes (a tracer
// attaches in between).
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define THREADS 4
#define CALLS 1000

static char sources[THREADS][128];
static char targets[THREADS][128];
static long strcmpSum[THREADS], memcpyBytes[THREADS], memsetBytes[THREADS];

static void *worker(void *arg) {
    long t = (long)arg;
    char left[8] = "ifx-00", right[8] = "ifx-03";
    left[4] = (char)('0' + t);
    right[4] = (char)('0' + t);
    for (int i = 0; i < CALLS; i++) {
        left[5] = (char)('0' + i % 7);
        size_t n = 40 + (size_t)(i % 8);
        memset(sources[t], 'Z', n);
        memsetBytes[t] += (long)n;
        memcpy(targets[t], sources[t], n);
        memcpyBytes[t] += (long)n;
        strcmpSum[t] += strcmp(left, right);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        printf("ready\n");
        fflush(stdout);
        int received;
        sigwait(&usr1, &received);
    }
    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, worker, (void *)t);
    long cmp = 0, copied = 0, set = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        cmp += strcmpSum[t];
        copied += memcpyBytes[t];
        set += memsetBytes[t];
    }
    // strstr: an indirect function libc itself never calls through a slot, so under lazy binding
    // nothing says which implementation it runs until this first call.
    // (glibc declares it pure: a volatile haystack keeps gcc from making one call of the ten.)
    const char *volatile haystack = "ifx-haystack-needle";
    int found = 0;
    for (int i = 0; i < 10; i++) found += strstr(haystack, "needle") != NULL;
    printf("calls strstr %d\n", found);
    printf("sources %p %zu\n", (void *)sources, sizeof sources);
    printf("calls strcmp %d\ncalls memcpy %d\ncalls memset %d\n", THREADS * CALLS, THREADS * CALLS, THREADS * CALLS);
    printf("sum strcmp %ld\nbytes memcpy %ld\nbytes memset %ld\n", cmp, copied, set);
    return 0;
}
