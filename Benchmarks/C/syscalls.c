// The syscall benchmark's workload: N calls of getpid and N reads of one byte from /dev/zero, both
// through syscall(2), timed by the program itself (CLOCK_MONOTONIC around each loop, so start-up and
// the tracer's attach and detach are not counted). Prints `getpid_ns X` and `read_ns Y`: nanoseconds
// per syscall.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) return 1;
    char byte;
    long long start = now();
    for (long i = 0; i < n; i++) syscall(SYS_getpid);
    long long middle = now();
    for (long i = 0; i < n; i++)
        if (syscall(SYS_read, fd, &byte, 1) != 1) return 1;
    long long end = now();
    printf("getpid_ns %.1f\nread_ns %.1f\n", (double)(middle - start) / n, (double)(end - middle) / n);
    return 0;
}
