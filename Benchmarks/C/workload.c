// The benchmark workload: T threads, each calling one traced function K times, released together
// by a barrier so every thread is inside its loop at once.
//
//   workload tiny  T K          nsb_tiny: `lea 1(%rdi), %rax; ret`, a few cycles
//   workload work  T K ITERS    nsb_work: ITERS rounds of a dependent multiply (~1 µs, calibrated)
//   workload floor T K          nsb_floor: a one-byte `nop`, then nsb_tiny's body; the floor tracer
//                               puts its int3 on the nop, so a hit needs no fix-up at all
//   workload floorwork T K ITERS  nsb_floor_work: a `nop`, then nsb_work
//   workload calibrate          prints how many ITERS make one microsecond
//
// Prints its own ground truth on stdout, `calls N loop_ns NS`: how many calls the threads made, and
// how long the calls took, from the first thread leaving the start barrier to the last one finishing
// its loop (so a tracer's start-up and detach are not counted). With NSB_RESULT=FILE in the
// environment the same line also goes to FILE, where a tracer's own output cannot interleave with it.
// The first instruction of nsb_tiny and nsb_work is one a tracer must relocate (a copy: neither
// emulated nor a `push`/`endbr64`, which nstrace emulates without any relocation).
//
// Built with -DNSB_PATCHABLE_ENTRY (and -fpatchable-function-entry=5), nsb_tiny and nsb_work begin
// with five one-byte `nop`s listed in __patchable_function_entries, as gcc's
// -fpatchable-function-entry=5 lays out a C function: the variant uftrace needs, because its
// capstone-based dynamic patching refuses nsb_tiny (the 5 bytes it would overwrite end in `ret`).
// Only uftrace runs this variant; the nops cost a cycle or so per call.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef NSB_PATCHABLE_ENTRY
#define PATCHABLE_ENTRY(name)                                                                      \
    ".pushsection __patchable_function_entries,\"awo\",@progbits," #name "\n.align 8\n"            \
    ".quad .Lpatchable_" #name "\n.popsection\n.Lpatchable_" #name ":\n"                         \
    "  nop\n  nop\n  nop\n  nop\n  nop\n"
#else
#define PATCHABLE_ENTRY(name) ""
#endif

long nsb_tiny(long a);
asm(".text\n.globl nsb_tiny\n.type nsb_tiny,@function\n.p2align 4\nnsb_tiny:\n" PATCHABLE_ENTRY(nsb_tiny)
    "  lea 1(%rdi), %rax\n"
    "  ret\n.size nsb_tiny, .-nsb_tiny\n");

long nsb_floor(long a);
asm(".text\n.globl nsb_floor\n.type nsb_floor,@function\n.p2align 4\nnsb_floor:\n"
    "  nop\n"
    "  lea 1(%rdi), %rax\n"
    "  ret\n.size nsb_floor, .-nsb_floor\n");

long nsb_work(long a, long iterations);
asm(".text\n.globl nsb_work\n.type nsb_work,@function\n.p2align 4\nnsb_work:\n" PATCHABLE_ENTRY(nsb_work)
    "  mov %rdi, %rax\n"
    "  mov %rsi, %rcx\n"
    "  test %rcx, %rcx\n"
    "  jle 2f\n"
    "1:\n"
    "  imul $0x5bd1e995, %rax, %rax\n"
    "  add $1, %rax\n"
    "  dec %rcx\n"
    "  jnz 1b\n"
    "2:\n"
    "  ret\n.size nsb_work, .-nsb_work\n");

long nsb_floor_work(long a, long iterations);
asm(".text\n.globl nsb_floor_work\n.type nsb_floor_work,@function\n.p2align 4\nnsb_floor_work:\n"
    "  nop\n"
    "  jmp nsb_work\n.size nsb_floor_work, .-nsb_floor_work\n");

enum mode { TINY, WORK, FLOOR, FLOOR_WORK };

struct span { double start, end; long made; };

static enum mode mode;
static long calls_per_thread, work_iterations;
static pthread_barrier_t start;

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    struct span *span = arg;
    long sum = (long)(uintptr_t)span, made = 0;
    pthread_barrier_wait(&start);
    span->start = seconds();
    for (long i = 0; i < calls_per_thread; i++) {
        switch (mode) {
        case TINY: sum = nsb_tiny(sum); break;
        case WORK: sum = nsb_work(sum, work_iterations); break;
        case FLOOR: sum = nsb_floor(sum); break;
        case FLOOR_WORK: sum = nsb_floor_work(sum, work_iterations); break;
        }
        made++;
    }
    span->end = seconds();
    span->made = made;
    // The result is used, so no call can be optimised away.
    if (sum == 42) fputs("", stderr);
    return NULL;
}

static int calibrate(void) {
    // The fastest of several runs: the machine is noisy, and a slow run only means interference.
    long n = 1000000;
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
        double t0 = seconds();
        long v = nsb_work(r, n);
        double t = seconds() - t0;
        if (v == 42) fputs("", stderr);
        if (t < best) best = t;
    }
    printf("%ld\n", (long)((double)n / (best * 1e6) + 0.5));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "calibrate") == 0) return calibrate();
    if (argc < 4) {
        fprintf(stderr, "usage: workload tiny|work|floor THREADS CALLS [ITERS] | workload calibrate\n");
        return 2;
    }
    if (strcmp(argv[1], "tiny") == 0) mode = TINY;
    else if (strcmp(argv[1], "work") == 0) mode = WORK;
    else if (strcmp(argv[1], "floor") == 0) mode = FLOOR;
    else if (strcmp(argv[1], "floorwork") == 0) mode = FLOOR_WORK;
    else { fprintf(stderr, "workload: unknown mode %s\n", argv[1]); return 2; }
    int threads = atoi(argv[2]);
    calls_per_thread = atol(argv[3]);
    work_iterations = argc > 4 ? atol(argv[4]) : 0;
    if (threads < 1 || threads > 256 || calls_per_thread < 0) { fprintf(stderr, "workload: bad arguments\n"); return 2; }

    // The main thread is worker 0: T threads in all.
    static pthread_t ids[256];
    static struct span spans[256];
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&ids[t], NULL, worker, &spans[t]) != 0) { fprintf(stderr, "workload: pthread_create failed\n"); return 1; }
    }
    worker(&spans[0]);
    for (int t = 1; t < threads; t++) pthread_join(ids[t], NULL);
    long made = 0;
    double first = spans[0].start, last = spans[0].end;
    for (int t = 0; t < threads; t++) {
        made += spans[t].made;
        if (spans[t].start < first) first = spans[t].start;
        if (spans[t].end > last) last = spans[t].end;
    }
    char line[128];
    snprintf(line, sizeof line, "calls %ld loop_ns %lld\n", made, (long long)((last - first) * 1e9));
    fputs(line, stdout);
    const char *result = getenv("NSB_RESULT");
    if (result) {
        FILE *f = fopen(result, "w");
        if (!f || fputs(line, f) < 0 || fclose(f) != 0) { perror("workload: NSB_RESULT"); return 1; }
    }
    return 0;
}
