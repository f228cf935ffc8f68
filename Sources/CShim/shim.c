#define _GNU_SOURCE
#include "nstrace_shim.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <elfutils/libdwfl.h>

static sigset_t original_mask;
static struct sigaction original_sigpipe;
static struct sigaction original_sigxfsz;
static int saved_originals;

long nst_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long local_count,
                          const struct iovec *remote, unsigned long remote_count) {
    return process_vm_readv(pid, local, local_count, remote, remote_count, 0);
}

long nst_ptrace(int request, pid_t pid, uintptr_t addr, uintptr_t data) {
    return ptrace((enum __ptrace_request)request, pid, (void *)addr, (void *)data);
}

int nst_errno(void) { return errno; }
void nst_set_errno(int value) { errno = value; }
const char *nst_errno_name(int value) { return strerrorname_np(value); }

int nst_siginfo_code(const siginfo_t *info) { return info->si_code; }
uintptr_t nst_siginfo_addr(const siginfo_t *info) { return (uintptr_t)info->si_addr; }
pid_t nst_siginfo_pid(const siginfo_t *info) { return info->si_pid; }

pid_t nst_spawn_stopped(const char *file, char *const argv[], int error_fd) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    // Child: only async-signal-safe calls from here on; the parent may be multi-threaded.
    if (saved_originals) {
        sigaction(SIGPIPE, &original_sigpipe, NULL);
        sigaction(SIGXFSZ, &original_sigxfsz, NULL);
        sigprocmask(SIG_SETMASK, &original_mask, NULL);
    }
    raise(SIGSTOP);
    execvp(file, argv);
    int e = errno;
    ssize_t ignored = write(error_fd, &e, sizeof e);
    (void)ignored;
    _exit(127);
}

pid_t nst_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int nst_tgkill(pid_t tgid, pid_t tid, int sig) { return (int)syscall(SYS_tgkill, tgid, tid, sig); }

struct nst_dwfl_session {
    Dwfl *dwfl;
    Dwfl_Callbacks callbacks;
    char *debuginfo_path;
};

struct nst_dwfl_session *nst_dwfl_session_begin(bool live, const char *debuginfo_path) {
    struct nst_dwfl_session *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    if (debuginfo_path != NULL) s->debuginfo_path = strdup(debuginfo_path);
    s->callbacks.find_debuginfo = dwfl_standard_find_debuginfo;
    s->callbacks.debuginfo_path = &s->debuginfo_path;
    if (live) {
        s->callbacks.find_elf = dwfl_linux_proc_find_elf;
    } else {
        s->callbacks.find_elf = dwfl_build_id_find_elf;
        s->callbacks.section_address = dwfl_offline_section_address;
    }
    s->dwfl = dwfl_begin(&s->callbacks);
    if (s->dwfl == NULL) {
        free(s->debuginfo_path);
        free(s);
        return NULL;
    }
    return s;
}

struct Dwfl *nst_dwfl_session_dwfl(struct nst_dwfl_session *s) { return s->dwfl; }

void nst_dwfl_session_end(struct nst_dwfl_session *s) {
    if (s == NULL) return;
    dwfl_end(s->dwfl);
    free(s->debuginfo_path);
    free(s);
}

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }
static void on_kick(int sig) { (void)sig; }

void nst_install_stop_handlers(void) {
    // What a launched program should start with: nstrace's own mask and SIGPIPE as they were given.
    pthread_sigmask(SIG_SETMASK, NULL, &original_mask);
    sigaction(SIGPIPE, NULL, &original_sigpipe);
    sigaction(SIGXFSZ, NULL, &original_sigxfsz);
    saved_originals = 1;
    sigset_t ours;
    sigemptyset(&ours);
    sigaddset(&ours, SIGINT);
    sigaddset(&ours, SIGTERM);
    sigaddset(&ours, SIGHUP);
    sigaddset(&ours, SIGUSR2);
    // Whoever started nstrace may have blocked these; threads created from here on inherit the unblock.
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    // No SA_RESTART: a waitpid blocked in the engine thread returns EINTR.
    // Every signal whose default action would end nstrace asks it to detach first instead: dying
    // with int3s in a live process would kill it at its next traced call. (Nothing helps against
    // SIGKILL.) SIGPIPE and SIGXFSZ are ignored: the failed write says the same and stops the trace.
    const int terminating[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGALRM, SIGXCPU, SIGVTALRM,
                               SIGPROF, SIGPWR, SIGSTKFLT, SIGIO};
    for (size_t i = 0; i < sizeof terminating / sizeof terminating[0]; i++) {
        sigaction(terminating[i], &sa, NULL);
        sigaddset(&ours, terminating[i]);
    }
    pthread_sigmask(SIG_UNBLOCK, &ours, NULL);
    sa.sa_handler = on_kick;
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
}

int nst_stop_signal(void) { return stop_signal; }

void nst_ensure_kick_handler(void) {
    struct sigaction current;
    if (sigaction(SIGUSR2, NULL, &current) != 0 || current.sa_handler != SIG_DFL) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
}
void nst_request_stop(int sig) { if (stop_signal == 0) stop_signal = sig; }

void nst_siginfo_set_addr(siginfo_t *info, uintptr_t addr) { info->si_addr = (void *)addr; }

int nst_requeue_signal(pid_t tgid, pid_t tid, const siginfo_t *info) {
    // sigqueue-style signals keep their code and value; the kernel lets only those (si_code < 0,
    // other than SI_TKILL) be forged by another process. The rest are sent again as SI_TKILL.
    if (info->si_code < 0 && info->si_code != SI_TKILL) {
        siginfo_t copy = *info;
        if (syscall(SYS_rt_tgsigqueueinfo, tgid, tid, info->si_signo, &copy) == 0) return 1;
    }
    return syscall(SYS_tgkill, tgid, tid, info->si_signo) == 0 ? 0 : -1;
}

int nst_same_address_space(pid_t a, pid_t b) {
    // kcmp(KCMP_VM): 0 when both tasks share one mm. -1 (unknown) without CONFIG_KCMP.
    long rc = syscall(SYS_kcmp, a, b, 1 /* KCMP_VM */, 0, 0);
    return rc < 0 ? -1 : rc == 0;
}

int nst_format_fixed(char *out, size_t size, double value, int decimals) {
    int n = snprintf(out, size, "%.*f", decimals, value);
    return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}

int nst_memfd(const char *name) { return (int)syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */); }
