// Eight worker threads call traced functions, each thousands of times in all, while another thread
// sends SIGUSR1 to the workers without pause and the main thread forks a child (which calls the same
// functions) and vforks one that execs /bin/true. The first instructions of the functions are the hard
// cases for a displaced-stepping tracer: a lock-prefixed RIP-relative add, a rel8 jmp, a rel32 jmp (a
// tail call), and a recursive C function.
//
// Usage: workers [THREADS] [ITERATIONS]. Prints its own ground truth: how many calls it made to each
// function, whether every result was right, and how its children ended.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 3

long fx_riprel_count;

// lock add qword [rip+fx_riprel_count], 1 — RIP-relative and locked, first thing.
long fx_riprel(long a, long b);
asm(".text\n.globl fx_riprel\n.type fx_riprel,@function\nfx_riprel:\n"
    "  lock addq $1, fx_riprel_count(%rip)\n"
    "  lea (%rdi,%rsi), %rax\n"
    "  ret\n.size fx_riprel, .-fx_riprel\n");

// jmp rel8 over a ud2 that must never run.
long fx_jmp8(long a);
asm(".text\n.globl fx_jmp8\n.type fx_jmp8,@function\nfx_jmp8:\n"
    "  .byte 0xeb, 0x02\n"
    "  ud2\n"
    "  lea 1(%rdi), %rax\n"
    "  ret\n.size fx_jmp8, .-fx_jmp8\n");

// jmp rel32 to another function: a tail call, spelled out so the assembler cannot shorten it.
long fx_tail32(long a);
asm(".text\n.globl fx_tail32\n.type fx_tail32,@function\nfx_tail32:\n"
    "  .byte 0xe9\n  .long fx_tail_target - (. + 4)\n"
    "  .size fx_tail32, .-fx_tail32\n");

__attribute__((noinline, noipa)) long fx_tail_target(long a) { return 3 * a; }

__attribute__((noinline, noipa)) long fx_recursive(long n) {
    if (n <= 0) return 0;
    return n + fx_recursive(n - 1);
}

static int iterations = 1000;
static atomic_int workers_running;
static atomic_long signals_received;
static atomic_long wrong_results;
static atomic_long calls_jmp8, calls_tail32, calls_recursive, calls_riprel;

// Every SIGUSR1 comes from the signaller's pthread_kill: SI_TKILL from this process. One that comes
// with other siginfo lost its own on the way (a tracer sent it again as its own).
static atomic_long signals_foreign;
static void on_usr1(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)context;
    atomic_fetch_add(&signals_received, 1);
    if (info->si_code != SI_TKILL || info->si_pid != getpid()) atomic_fetch_add(&signals_foreign, 1);
}

/// One round of calls; returns how many results were wrong.
static long round_of_calls(long i, long id) {
    long wrong = 0;
    if (fx_riprel(i, id) != i + id) wrong++;
    if (fx_jmp8(i) != i + 1) wrong++;
    if (fx_tail32(i) != 3 * i) wrong++;
    if (fx_recursive(DEPTH) != DEPTH * (DEPTH + 1) / 2) wrong++;
    return wrong;
}

static void *worker(void *arg) {
    long id = (long)arg;
    for (long i = 0; i < iterations; i++) {
        atomic_fetch_add(&wrong_results, round_of_calls(i, id));
        atomic_fetch_add(&calls_riprel, 1);
        atomic_fetch_add(&calls_jmp8, 1);
        atomic_fetch_add(&calls_tail32, 1);
        atomic_fetch_add(&calls_recursive, DEPTH + 1);
    }
    atomic_fetch_sub(&workers_running, 1);
    return NULL;
}

static pthread_t workers[64];
static int nworkers = 8;

static void *signaller(void *arg) {
    (void)arg;
    long sent = 0;
    struct timespec pause = {0, 50 * 1000};
    while (atomic_load(&workers_running) > 0) {
        for (int i = 0; i < nworkers; i++) {
            if (pthread_kill(workers[i], SIGUSR1) == 0) sent++;
        }
        nanosleep(&pause, NULL);
    }
    return (void *)sent;
}

int main(int argc, char **argv) {
    if (argc > 1) nworkers = atoi(argv[1]);
    if (argc > 2) iterations = atoi(argv[2]);
    if (nworkers < 1 || nworkers > 64) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);

    atomic_store(&workers_running, nworkers);
    for (long i = 0; i < nworkers; i++) pthread_create(&workers[i], NULL, worker, (void *)i);
    pthread_t sender;
    pthread_create(&sender, NULL, signaller, NULL);

    // A forked child runs the same functions with every breakpoint inherited.
    pid_t child = fork();
    if (child == 0) {
        long wrong = 0;
        for (long i = 0; i < 100; i++) wrong += round_of_calls(i, 99);
        _exit(wrong == 0 ? 0 : 1);
    }
    // A vforked child shares the parent's memory (and breakpoints) until it execs.
    pid_t vchild = vfork();
    if (vchild == 0) {
        if (fx_jmp8(41) != 42) _exit(3);
        execl("/bin/true", "true", (char *)NULL);
        _exit(4);
    }

    // The signaller first: it signals workers until the last one is done, and pthread_kill on a thread
    // already joined (its stack freed) is undefined behaviour.
    void *sent;
    pthread_join(sender, &sent);
    for (int i = 0; i < nworkers; i++) pthread_join(workers[i], NULL);

    int status = 0, vstatus = 0;
    waitpid(child, &status, 0);
    waitpid(vchild, &vstatus, 0);

    printf("calls fx_riprel %ld\n", atomic_load(&calls_riprel));
    printf("calls fx_jmp8 %ld\n", atomic_load(&calls_jmp8));
    printf("calls fx_tail32 %ld\n", atomic_load(&calls_tail32));
    printf("calls fx_tail_target %ld\n", atomic_load(&calls_tail32));
    printf("calls fx_recursive %ld\n", atomic_load(&calls_recursive));
    printf("riprel counter %ld\n", fx_riprel_count);
    printf("child calls %d\n", 100);
    printf("signals sent %ld received %ld\n", (long)sent, atomic_load(&signals_received));
    printf("foreign signals %ld\n", atomic_load(&signals_foreign));
    if (WIFSIGNALED(status)) printf("child killed by signal %d\n", WTERMSIG(status));
    else printf("child exited %d\n", WEXITSTATUS(status));
    if (WIFSIGNALED(vstatus)) printf("vfork child killed by signal %d\n", WTERMSIG(vstatus));
    else printf("vfork child exited %d\n", WEXITSTATUS(vstatus));
    long wrong = atomic_load(&wrong_results) + (fx_riprel_count != atomic_load(&calls_riprel));
    printf("wrong results %ld\n", wrong);
    return wrong == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && WIFEXITED(vstatus)
                   && WEXITSTATUS(vstatus) == 0 ? 0 : 1;
}
