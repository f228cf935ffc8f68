#ifndef NSTRACE_SHIM_H
#define NSTRACE_SHIM_H

#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>

// glibc's ptrace(2) is variadic, which Swift cannot call. Returns what ptrace returns; errno is set.
long nst_ptrace(int request, pid_t pid, uintptr_t addr, uintptr_t data);

// process_vm_readv(2), declared by glibc only under _GNU_SOURCE. Returns bytes read, -1 with errno.
struct iovec;
long nst_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long local_count,
                          const struct iovec *remote, unsigned long remote_count);

// Wait-status macros are macros; Swift sees these instead.
static inline bool nst_wifexited(int s) { return WIFEXITED(s); }
static inline int nst_wexitstatus(int s) { return WEXITSTATUS(s); }
static inline bool nst_wifsignaled(int s) { return WIFSIGNALED(s); }
static inline int nst_wtermsig(int s) { return WTERMSIG(s); }
static inline bool nst_wifstopped(int s) { return WIFSTOPPED(s); }
static inline int nst_wstopsig(int s) { return WSTOPSIG(s); }
static inline bool nst_wcoredump(int s) { return WCOREDUMP(s); }

// The errno of the calling thread, and a way to clear it (glibc's errno is a macro over a TLS slot).
int nst_errno(void);
void nst_set_errno(int value);
// ENOENT for 2 (glibc's strerrorname_np); NULL for a number it has no name for.
const char *nst_errno_name(int value);

// Fields of siginfo_t that live inside unions Swift cannot name.
int nst_siginfo_code(const siginfo_t *info);
uintptr_t nst_siginfo_addr(const siginfo_t *info);
pid_t nst_siginfo_pid(const siginfo_t *info);

void nst_siginfo_set_addr(siginfo_t *info, uintptr_t addr);

// Stop requests: SIGINT/SIGTERM/SIGHUP set a flag (and SIGPIPE is ignored); SIGUSR2 only interrupts
// a blocking system call in the thread it is sent to.
void nst_install_stop_handlers(void);
int nst_stop_signal(void);
// SIGUSR2 wakes the engine thread out of a blocking call; installs the do-nothing handler (no
// SA_RESTART) if nothing else did.
void nst_ensure_kick_handler(void);
void nst_request_stop(int sig);

// Sends a held signal again: with its siginfo where the kernel allows (sigqueue-style; returns 1),
// else with tgkill (returns 0: it arrives as SI_TKILL from nstrace). -1 when it could not be sent.
int nst_requeue_signal(pid_t tgid, pid_t tid, const siginfo_t *info);

// 1 when two tasks share an address space, 0 when not, -1 when the kernel cannot say.
int nst_same_address_space(pid_t a, pid_t b);

// fork() is unavailable to Swift. The child stops itself with SIGSTOP before execvp so the parent can
// PTRACE_SEIZE it with no race; if execvp fails the child exits with 127 after writing errno to
// `error_fd` (close-on-exec, so a successful exec just closes it).
pid_t nst_spawn_stopped(const char *file, char *const argv[], int error_fd);

// The thread id of the calling thread.
pid_t nst_gettid(void);

// printf's "%.*f" into out (at most size bytes, NUL included): the length written. Swift has no
// allocation-free way to call a variadic C function, and renderers format durations per event.
int nst_format_fixed(char *out, size_t size, double value, int decimals);

// memfd_create(name, MFD_CLOEXEC): an anonymous file to map twice (the benchmarks' ring in memory).
int nst_memfd(const char *name);

// A store the loads before it cannot pass: a stop slot freed once its registers are read.
static inline void nst_release_store(uint64_t *word, uint64_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
}

// Takes one from a counter shared with tracee code, never below zero.
static inline void nst_atomic_decrement_to_zero(uint64_t *counter) {
    uint64_t value = __atomic_load_n(counter, __ATOMIC_RELAXED);
    while (value > 0 && !__atomic_compare_exchange_n(counter, &value, value - 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

// The CPU's time-stamp counter: the clock the inline pads stamp records with.
static inline uint64_t nst_rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}
int nst_tgkill(pid_t tgid, pid_t tid, int sig);

// libdwfl keeps a pointer to its callback table, and the table to the debuginfo search path, for the
// session's lifetime; a session owns both. `debuginfo_path` follows elfutils' convention
// (":.debug:/usr/lib/debug" when NULL). `live` chooses /proc/PID reporting over files on disk.
struct Dwfl;
struct nst_dwfl_session;
struct nst_dwfl_session *nst_dwfl_session_begin(bool live, const char *debuginfo_path);
struct Dwfl *nst_dwfl_session_dwfl(struct nst_dwfl_session *session);
void nst_dwfl_session_end(struct nst_dwfl_session *session);

// The crash guard (crash_guard.c): if nstrace faults or traps (SIGSEGV, SIGBUS, SIGILL, SIGTRAP,
// SIGABRT, SIGFPE) its handler, on the tracing thread, stops every traced thread, puts back every
// patched place still holding nstrace's bytes, puts every thread back on the program's own
// instructions, detaches, and lets the signal take its course. The engine keeps the tables current.
#define NST_GUARD_HELD_SIGNALS 8
// Patch kinds, restored in this order: int3s (a thread that just hit one goes back onto it), trap-pad
// int3s (a thread that hit one runs on), then everything else.
#define NST_GUARD_INT3 0
#define NST_GUARD_TRAP 1
#define NST_GUARD_OTHER 2
struct user_regs_struct;
void nst_guard_install(pid_t tracer);
int32_t nst_guard_add_patch(uint32_t owner, pid_t pid, uint64_t address, const uint8_t *original,
                            const uint8_t *patched, int length, int kind);
void nst_guard_remove_patch(int32_t index);
void nst_guard_forget_owner(uint32_t owner);
int32_t nst_guard_add_thread(pid_t tid, pid_t pid);
void nst_guard_remove_thread(int32_t index);
// A stop the engine has reaped and not resumed from.
void nst_guard_set_held(int32_t index, bool held);
// Where a held thread goes back to if let go now (0: clear; clearing after its registers were moved
// past the site tells the guard to leave it where it is).
void nst_guard_set_rewind(int32_t index, uint64_t address);
// A relocated instruction single-stepped in `slot` (`scratch_register` -1 when none is borrowed).
void nst_guard_set_step(int32_t index, uint64_t slot, uint64_t end, uint64_t site, uint64_t resume,
                        int scratch_register, uint64_t saved_scratch, bool clears_tf);
void nst_guard_clear_step(int32_t index);
void nst_guard_set_held_signals(int32_t index, const siginfo_t *infos, int count);
// A system call injected into `tid`: its registers as they go back (NULL: done).
void nst_guard_set_injection(pid_t tid, const struct user_regs_struct *saved);
void nst_guard_add_region(uint64_t start, uint64_t size);
void nst_guard_add_ring(void *base, size_t heartbeat_offset, size_t acknowledged_offset);
void nst_guard_remove_ring(void *base);
// Forgets everything (after a normal detach).
void nst_guard_reset(void);

#endif
