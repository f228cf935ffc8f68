// Four threads make known syscalls through syscall(2) (no libc wrapper in between), ROUNDS rounds
// each: an openat of a missing file (ENOENT), openat /dev/zero and /dev/null, a read of 16 bytes, a
// write, a read of fd -1 (EBADF), two closes. Worker i writes "worker i\n" and opens
// /nonexistent/nstrace-missing-i, so a test knows which thread made which call.
//
//   syscalls ROUNDS          run at once
//   syscalls ROUNDS wait     print "ready", wait for SIGUSR1 (a tracer attaches meanwhile), run, print
//                            "done", then wait for SIGUSR1 again (so the tracer can detach from a live
//                            process)
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREADS 4

static int rounds;

// One round, in a function of its own so that a test can trace it beside its syscalls.
__attribute__((noinline)) int sx_round(long i) {
    char missing[64], message[16];
    snprintf(missing, sizeof missing, "/nonexistent/nstrace-missing-%ld", i);
    int length = snprintf(message, sizeof message, "worker %ld\n", i);
    char buffer[16];
    int failures = 0;
    if (syscall(SYS_openat, AT_FDCWD, missing, O_RDONLY) != -1) failures++;
    long in = syscall(SYS_openat, AT_FDCWD, "/dev/zero", O_RDONLY | O_CLOEXEC);
    long out = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (syscall(SYS_read, in, buffer, sizeof buffer) != sizeof buffer) failures++;
    if (syscall(SYS_write, out, message, length) != length) failures++;
    if (syscall(SYS_read, -1, buffer, sizeof buffer) != -1) failures++;
    if (syscall(SYS_close, in) != 0) failures++;
    if (syscall(SYS_close, out) != 0) failures++;
    return failures;
}

static void *worker(void *arg) {
    long i = (long)arg, failures = 0;
    for (int r = 0; r < rounds; r++) failures += sx_round(i);
    return (void *)failures;
}

static void wait_for_usr1(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int signal;
    sigwait(&set, &signal);
}

int main(int argc, char **argv) {
    rounds = argc > 1 ? atoi(argv[1]) : 3;
    int waits = argc > 2 && strcmp(argv[2], "wait") == 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    printf("pid %d\n", getpid());
    if (waits) {
        printf("ready\n");
        fflush(stdout);
        wait_for_usr1();
    }
    pthread_t threads[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, worker, (void *)i);
    long failures = 0;
    for (int i = 0; i < THREADS; i++) {
        void *result;
        pthread_join(threads[i], &result);
        failures += (long)result;
    }
    printf("syscalls per thread %d\nfailures %ld\ndone\n", rounds * 8, failures);
    fflush(stdout);
    if (waits) wait_for_usr1();
    return failures != 0;
}
