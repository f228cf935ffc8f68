#define _GNU_SOURCE
#include "oracle_support.h"

#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>


_Static_assert(sizeof(cpu_set_t) <= ORACLE_AFFINITY_SIZE, "ORACLE_AFFINITY_SIZE too small");

pid_t oracle_spawn_traced(const char *path, char *const argv[], int cpu) {
    cpu_set_t only;
    CPU_ZERO(&only);
    if (cpu >= 0) CPU_SET(cpu, &only);
    pid_t pid = fork();
    if (pid != 0) return pid;
    // Child of a multi-threaded parent: system calls only until exec.
    if (cpu >= 0) sched_setaffinity(0, sizeof only, &only);
    ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    execv(path, argv);
    _exit(127);
}

int oracle_current_cpu(void) { return sched_getcpu(); }

int oracle_pin_calling_thread(int cpu, void *saved) {
    if (sched_getaffinity(0, sizeof(cpu_set_t), (cpu_set_t *)saved) != 0) return -1;
    cpu_set_t only;
    CPU_ZERO(&only);
    CPU_SET(cpu, &only);
    return sched_setaffinity(0, sizeof only, &only);
}

int oracle_restore_affinity(const void *saved) {
    return sched_setaffinity(0, sizeof(cpu_set_t), (const cpu_set_t *)saved);
}

int oracle_xstate_component(unsigned index, uint32_t *offset, uint32_t *size) {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(0xd, index, &eax, &ebx, &ecx, &edx)) return 0;
    *size = eax;
    *offset = ebx;
    return eax != 0;
}

uint64_t oracle_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

uint64_t oracle_call2(const void *fn, uint64_t a, uint64_t b) {
    return ((uint64_t (*)(uint64_t, uint64_t))fn)(a, b);
}

struct call2_job { const void *fn; long calls; long wrong; };

static void *call2_worker(void *arg) {
    struct call2_job *job = arg;
    for (long i = 0; i < job->calls; i++)
        if (oracle_call2(job->fn, (uint64_t)i, (uint64_t)i) != (uint64_t)(2 * i)) job->wrong++;
    return NULL;
}

long oracle_call2_threads(const void *fn, int threads, long calls) {
    pthread_t ids[64];
    struct call2_job jobs[64];
    if (threads > 64) threads = 64;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct call2_job){fn, calls, 0};
        pthread_create(&ids[t], NULL, call2_worker, &jobs[t]);
    }
    long wrong = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        wrong += jobs[t].wrong;
    }
    return wrong;
}

long oracle_tcb_tid_offset(void) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    const unsigned char *self = (const unsigned char *)pthread_self();
    for (long off = 0; off < 0x1000; off += 4) {
        pid_t v;
        memcpy(&v, self + off, 4);
        if (v == tid) return off;
    }
    return -1;
}

int oracle_continue_to(pid_t pid, uint64_t address, int *stop_signal, int *code, uint64_t *address_out) {
    long dr0 = offsetof(struct user, u_debugreg[0]), dr7 = offsetof(struct user, u_debugreg[7]);
    // DR7: L0 set, R/W0 = 00 (instruction execution), LEN0 = 00.
    if (address != 0 && (ptrace(PTRACE_POKEUSER, pid, (void *)dr0, (void *)address) != 0 ||
                         ptrace(PTRACE_POKEUSER, pid, (void *)dr7, (void *)1) != 0))
        return -1;
    if (ptrace(PTRACE_CONT, pid, NULL, NULL) != 0) return -1;
    int status = 0;
    pid_t got;
    do got = waitpid(pid, &status, __WALL); while (got < 0 && errno == EINTR);
    if (got != pid) return -1;
    if (!WIFSTOPPED(status)) return 1;
    *stop_signal = WSTOPSIG(status);
    siginfo_t info;
    if (ptrace(PTRACE_GETSIGINFO, pid, NULL, &info) != 0) return -1;
    *code = info.si_code;
    *address_out = (uint64_t)info.si_addr;
    if (address != 0 && ptrace(PTRACE_POKEUSER, pid, (void *)dr7, (void *)0) != 0) return -1;
    return 0;
}
