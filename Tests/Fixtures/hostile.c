// Processes that are hard on a tracer, one per mode. Each prints "ready" once running, then "tick N"
// about every 50 ms; "BAD" if it sees a wrong result. Workers call hx_work() all the time.
//
//   hostile vfork      a thread vforks in a loop; each child waits 2 ms and exits
//   hostile jit        workers call hx_work through code in anonymous executable memory; on SIGUSR2
//                      the program dlopens libz and prints "dlopened"
//   hostile sigqueue   a thread sends SIGRTMIN with a value (sigqueue) to the workers; on SIGTERM the
//                      program prints "sent S received R badinfo B" and exits
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline, noipa)) long hx_work(long a) { return a * 3 + 1; }

typedef long (*stub_fn)(long);
static stub_fn call_work = hx_work;
static volatile sig_atomic_t stopping, workers_stop, want_dlopen;
static atomic_long sent, received, badinfo;
static pthread_t workers[4];

static void check(long got, long want) {
    if (got != want) {
        printf("BAD %ld != %ld\n", got, want);
        exit(1);
    }
}

static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; !workers_stop; i++) {
        check(call_work(i & 0xff), (i & 0xff) * 3 + 1);
        if ((i & 15) == 0) usleep(100);
    }
    return NULL;
}

static void *vforker(void *arg) {
    (void)arg;
    for (;;) {
        pid_t child = vfork();
        if (child == 0) {
            usleep(2000);
            _exit(0);
        }
        int status;
        waitpid(child, &status, 0);
        if (!WIFEXITED(status)) printf("BAD child status %d\n", status);
    }
    return NULL;
}

static void on_rt(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)context;
    atomic_fetch_add(&received, 1);
    if (info->si_code != SI_QUEUE || info->si_value.sival_int != 4242) atomic_fetch_add(&badinfo, 1);
}

static void *sender(void *arg) {
    (void)arg;
    union sigval value = {.sival_int = 4242};
    while (!stopping) {
        for (int i = 0; i < 4; i++) {
            if (pthread_sigqueue(workers[i], SIGRTMIN, value) == 0) atomic_fetch_add(&sent, 1);
        }
        usleep(50);
    }
    return NULL;
}

static void on_term(int sig) { (void)sig; stopping = 1; }
static void on_usr2(int sig) { (void)sig; want_dlopen = 1; }

// sub rsp, 8; mov rax, imm64; call rax; add rsp, 8; ret — a JIT stub that calls hx_work.
static stub_fn make_jit_stub(void) {
    unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char code[] = {0x48, 0x83, 0xec, 0x08, 0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3};
    uint64_t target = (uint64_t)hx_work;
    memcpy(code + 6, &target, 8);
    memcpy(page, code, sizeof code);
    return (stub_fn)page;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    if (strcmp(mode, "jit") == 0) call_work = make_jit_stub();

    for (int i = 0; i < 4; i++) pthread_create(&workers[i], NULL, worker, NULL);
    pthread_t helper;
    if (strcmp(mode, "vfork") == 0) pthread_create(&helper, NULL, vforker, NULL);
    if (strcmp(mode, "sigqueue") == 0) pthread_create(&helper, NULL, sender, NULL);
    printf("ready\n");
    for (long tick = 0; !stopping; tick++) {
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
        if (want_dlopen) {
            want_dlopen = 0;
            printf(dlopen("libz.so.1", RTLD_NOW) ? "dlopened\n" : "BAD dlopen\n");
        }
        printf("tick %ld\n", tick);
    }
    if (strcmp(mode, "sigqueue") == 0) {
        pthread_join(helper, NULL);
        usleep(200000);  // the workers take the signals still on their way
        workers_stop = 1;
        for (int i = 0; i < 4; i++) pthread_join(workers[i], NULL);
        printf("sent %ld received %ld badinfo %ld\n", (long)sent, (long)received, (long)badinfo);
    }
    return 0;
}
