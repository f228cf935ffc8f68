// What the benchmark's own small ptrace tracers share: launch a program under PTRACE_SEIZE, find the
// breakpoint site in it, write its text, wait for stops, and report what they saw.
//
// Each tracer is run as `TRACER SITE_VADDR -- PROGRAM ARGS…`: SITE_VADDR is the link-time address of
// the traced function in PROGRAM (a PIE; the load base is read from /proc/PID/maps after exec). At
// exit it prints `nsb-hits N` on stderr — how many breakpoint hits it saw — and exits with PROGRAM's
// status. These are baselines, not products: one site, one process, no signals expected.
#ifndef NSB_TRACER_H
#define NSB_TRACER_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define NSB_MAX_THREADS 1024

static pid_t nsb_pid;
static int nsb_mem = -1;
static uintptr_t nsb_site;
static unsigned char nsb_original;
static long nsb_hits;
static int nsb_exit_status = 1;

static inline void nsb_die(const char *what) {
    fprintf(stderr, "nsb-tracer: %s: %s\n", what, strerror(errno));
    if (nsb_pid > 0) kill(nsb_pid, SIGKILL);
    exit(125);
}

static inline int nsb_event(int status) { return status >> 16; }

/// waitpid that retries EINTR; returns -1 only for ECHILD (nothing left to wait for).
static inline pid_t nsb_wait(pid_t which, int *status) {
    for (;;) {
        pid_t tid = waitpid(which, status, __WALL);
        if (tid >= 0) return tid;
        if (errno == EINTR) continue;
        if (errno == ECHILD) return -1;
        nsb_die("waitpid");
    }
}

/// Notes the program's exit status when its leader is reaped.
static inline void nsb_note_exit(pid_t tid, int status) {
    if (tid != nsb_pid) return;
    if (WIFEXITED(status)) nsb_exit_status = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) nsb_exit_status = 128 + WTERMSIG(status);
}

static inline void nsb_write_byte(unsigned char byte) {
    if (pwrite(nsb_mem, &byte, 1, (off_t)nsb_site) != 1) nsb_die("write breakpoint");
}

static inline uintptr_t nsb_rip(pid_t tid) {
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, tid, 0, &regs) != 0) nsb_die("PTRACE_GETREGS");
    return (uintptr_t)regs.rip;
}

static inline void nsb_set_rip(pid_t tid, uintptr_t rip) {
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, tid, 0, &regs) != 0) nsb_die("PTRACE_GETREGS");
    regs.rip = rip;
    if (ptrace(PTRACE_SETREGS, tid, 0, &regs) != 0) nsb_die("PTRACE_SETREGS");
}

static inline void nsb_cont(pid_t tid, int sig) {
    // ESRCH: the thread died meanwhile (its exit is reported by waitpid).
    if (ptrace(PTRACE_CONT, tid, 0, (void *)(long)sig) != 0 && errno != ESRCH) nsb_die("PTRACE_CONT");
}

/// The load base of the main executable: the start of the first mapping of /proc/PID/exe.
static inline uintptr_t nsb_load_base(pid_t pid) {
    char path[64], exe[4096], line[4096 + 128];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n < 0) nsb_die("readlink exe");
    exe[n] = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) nsb_die("open maps");
    uintptr_t base = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long start;
        char *name = strchr(line, '/');
        if (!name) continue;
        name[strcspn(name, "\n")] = 0;
        if (strcmp(name, exe) == 0 && sscanf(line, "%lx-", &start) == 1) { base = start; break; }
    }
    fclose(maps);
    if (!base) { errno = ENOENT; nsb_die("find the executable in maps"); }
    return base;
}

/// Parses `SITE_VADDR -- PROGRAM ARGS…`, launches PROGRAM stopped at its exec, writes the int3 at
/// the site, and returns with the program stopped (the caller continues it).
static inline void nsb_launch(int argc, char **argv, long options) {
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: %s SITE_VADDR -- PROGRAM [ARGS...]\n", argv[0]);
        exit(2);
    }
    uintptr_t vaddr = (uintptr_t)strtoull(argv[1], NULL, 0);
    pid_t pid = fork();
    if (pid < 0) nsb_die("fork");
    if (pid == 0) {
        raise(SIGSTOP);
        execvp(argv[3], argv + 3);
        _exit(127);
    }
    nsb_pid = pid;
    int status;
    if (waitpid(pid, &status, WUNTRACED) != pid || !WIFSTOPPED(status)) nsb_die("child did not stop");
    if (ptrace(PTRACE_SEIZE, pid, 0, (void *)(options | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL)) != 0)
        nsb_die("PTRACE_SEIZE");
    kill(pid, SIGCONT);
    for (;;) {
        if (nsb_wait(pid, &status) < 0 || !WIFSTOPPED(status)) { errno = ECHILD; nsb_die("exec"); }
        if (nsb_event(status) == PTRACE_EVENT_EXEC) break;
        int sig = WSTOPSIG(status);
        nsb_cont(pid, nsb_event(status) || sig == SIGSTOP || sig == SIGCONT ? 0 : sig);
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    nsb_mem = open(path, O_RDWR | O_CLOEXEC);
    if (nsb_mem < 0) nsb_die("open mem");
    nsb_site = nsb_load_base(pid) + vaddr;
    if (pread(nsb_mem, &nsb_original, 1, (off_t)nsb_site) != 1) nsb_die("read site");
    nsb_write_byte(0xcc);
}

static inline int nsb_report(void) {
    fprintf(stderr, "nsb-hits %ld\n", nsb_hits);
    return nsb_exit_status;
}

#endif
