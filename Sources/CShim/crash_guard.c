// The crash guard: if nstrace itself faults or traps while tracees carry its int3s and windows, a
// signal handler puts every original byte back, gets every thread off nstrace's sites and slots, and
// detaches, before nstrace dies. Only async-signal-safe calls (raw system calls, no malloc, no stdio)
// run in the handler; the engine keeps the tables current from its own thread.
#define _GNU_SOURCE
#include "nstrace_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

// Tables. Entries are filled before they are published (pid/tid written last, with release order) so
// a handler that interrupts the engine mid-update sees a whole entry or none. Growth publishes a new
// array and leaks the old one (a handler may be reading it).
struct guard_patch {
    _Atomic pid_t pid;  // 0: free
    uint32_t owner;
    uint8_t kind;       // NST_GUARD_INT3 before the others
    uint8_t length;
    uint8_t restored;   // by the handler (the entry still tells where a thread that hit it belongs)
    uint8_t original[16];
    uint8_t patched[16];
    uint64_t address;
};

struct guard_thread {
    _Atomic pid_t tid;  // 0: free
    pid_t pid;
    // What nstrace would do if it let the thread go now (see nst_guard_set_*).
    volatile uint8_t held, passed, stepping, clears_tf, injecting;
    volatile int8_t scratch_register;
    volatile uint64_t rewind;
    volatile uint64_t step_slot, step_end, step_site, step_resume, step_saved_scratch;
    struct user_regs_struct injection_saved;
    volatile int held_count;
    siginfo_t held_signals[NST_GUARD_HELD_SIGNALS];
    // The handler's own bookkeeping.
    uint8_t interrupted, reported, gone, detached;
};

struct guard_region { uint64_t start, end; };
struct guard_ring { uint8_t *base; size_t heartbeat, acknowledged; };

static struct guard_patch *_Atomic patches;
static _Atomic int patch_capacity, patch_count;
static struct guard_thread *_Atomic threads;
static _Atomic int thread_capacity, thread_count;
static struct guard_region regions[256];
static _Atomic int region_count;
static struct guard_ring rings[64];
static _Atomic int ring_count;

static _Atomic pid_t tracer_tid;
static _Atomic int guard_state;  // 0 armed, 1 restoring, 2 done
static int route_signal;
static const int guarded_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE};
static struct sigaction previous[sizeof guarded_signals / sizeof guarded_signals[0]];
static char alternate_stack[64 * 1024];

// MARK: Tables, from the engine thread

static void *grow(void *old, int old_capacity, int new_capacity, size_t size) {
    void *fresh = calloc((size_t)new_capacity, size);
    if (fresh && old) memcpy(fresh, old, (size_t)old_capacity * size);
    return fresh;  // the old array is leaked on purpose: a handler may be reading it
}

// Both tables' entries start with their key (pid or tid, 0 when the entry is free).
_Static_assert(offsetof(struct guard_patch, pid) == 0, "key first");
_Static_assert(offsetof(struct guard_thread, tid) == 0, "key first");

/// An entry to fill: a free one among the last `scan`, else one past the end (the table grown, and
/// published, first). -1 when memory runs out. The caller publishes the count after filling it.
static int take_slot(void *_Atomic *table, _Atomic int *count, _Atomic int *capacity, size_t size, int initial, int scan) {
    char *entries = atomic_load(table);
    int n = atomic_load(count), cap = atomic_load(capacity);
    for (int i = n - 1; i >= 0 && n - i <= scan; i--)
        if (atomic_load_explicit((_Atomic pid_t *)(entries + (size_t)i * size), memory_order_relaxed) == 0) return i;
    if (n == cap) {
        int bigger = cap ? cap * 2 : initial;
        void *fresh = grow(entries, cap, bigger, size);
        if (!fresh) return -1;
        atomic_store(table, fresh);
        atomic_store(capacity, bigger);
    }
    return n;
}

int32_t nst_guard_add_patch(uint32_t owner, pid_t pid, uint64_t address, const uint8_t *original,
                            const uint8_t *patched, int length, int kind) {
    if (length <= 0 || length > 16 || pid <= 0) return -1;
    // A freed entry near the end (sites come and go in runs), else a new one.
    int slot = take_slot((void *_Atomic *)&patches, &patch_count, &patch_capacity, sizeof(struct guard_patch), 1024, 8);
    if (slot < 0) return -1;
    struct guard_patch *table = atomic_load(&patches);
    int count = atomic_load(&patch_count);
    struct guard_patch *p = &table[slot];
    p->owner = owner;
    p->kind = (uint8_t)kind;
    p->length = (uint8_t)length;
    memcpy(p->original, original, (size_t)length);
    memcpy(p->patched, patched, (size_t)length);
    p->address = address;
    p->restored = 0;
    atomic_store_explicit(&p->pid, pid, memory_order_release);
    if (slot == count) atomic_store(&patch_count, count + 1);
    return slot;
}

void nst_guard_remove_patch(int32_t index) {
    struct guard_patch *table = atomic_load(&patches);
    if (index >= 0 && index < atomic_load(&patch_count)) atomic_store(&table[index].pid, 0);
}

void nst_guard_forget_owner(uint32_t owner) {
    struct guard_patch *table = atomic_load(&patches);
    int count = atomic_load(&patch_count);
    for (int i = 0; i < count; i++)
        if (table[i].owner == owner) atomic_store(&table[i].pid, 0);
}

int32_t nst_guard_add_thread(pid_t tid, pid_t pid) {
    int slot = take_slot((void *_Atomic *)&threads, &thread_count, &thread_capacity, sizeof(struct guard_thread), 64, INT32_MAX);
    if (slot < 0) return -1;
    struct guard_thread *table = atomic_load(&threads);
    int count = atomic_load(&thread_count);
    struct guard_thread *t = &table[slot];
    memset((void *)((char *)t + sizeof t->tid), 0, sizeof *t - sizeof t->tid);
    t->pid = pid;
    atomic_store_explicit(&t->tid, tid, memory_order_release);
    if (slot == count) atomic_store(&thread_count, count + 1);
    return slot;
}

static struct guard_thread *thread_at(int32_t index) {
    struct guard_thread *table = atomic_load(&threads);
    return index >= 0 && index < atomic_load(&thread_count) ? &table[index] : NULL;
}

void nst_guard_remove_thread(int32_t index) {
    struct guard_thread *t = thread_at(index);
    if (t) atomic_store(&t->tid, 0);
}

void nst_guard_set_held(int32_t index, bool held) {
    struct guard_thread *t = thread_at(index);
    if (!t) return;
    t->held = held;
    if (!held) { t->passed = 0; t->rewind = 0; }
}

void nst_guard_set_rewind(int32_t index, uint64_t address) {
    struct guard_thread *t = thread_at(index);
    if (!t) return;
    // Cleared once the thread's registers have been moved past the site: from then on it stays put.
    if (address == 0 && t->rewind != 0) t->passed = 1;
    t->rewind = address;
}

void nst_guard_set_step(int32_t index, uint64_t slot, uint64_t end, uint64_t site, uint64_t resume,
                        int scratch_register, uint64_t saved_scratch, bool clears_tf) {
    struct guard_thread *t = thread_at(index);
    if (!t) return;
    t->stepping = 0;
    t->step_slot = slot;
    t->step_end = end;
    t->step_site = site;
    t->step_resume = resume;
    t->scratch_register = (int8_t)scratch_register;
    t->step_saved_scratch = saved_scratch;
    t->clears_tf = clears_tf;
    t->stepping = 1;
}

void nst_guard_clear_step(int32_t index) {
    struct guard_thread *t = thread_at(index);
    if (t) t->stepping = 0;
}

void nst_guard_set_held_signals(int32_t index, const siginfo_t *infos, int count) {
    struct guard_thread *t = thread_at(index);
    if (!t) return;
    t->held_count = 0;
    if (count > NST_GUARD_HELD_SIGNALS) count = NST_GUARD_HELD_SIGNALS;
    for (int i = 0; i < count; i++) t->held_signals[i] = infos[i];
    t->held_count = count;
}

void nst_guard_set_injection(pid_t tid, const struct user_regs_struct *saved) {
    struct guard_thread *table = atomic_load(&threads);
    int count = atomic_load(&thread_count);
    for (int i = 0; i < count; i++) {
        if (atomic_load(&table[i].tid) != tid) continue;
        table[i].injecting = 0;
        if (saved) { table[i].injection_saved = *saved; table[i].injecting = 1; }
    }
}

void nst_guard_add_region(uint64_t start, uint64_t size) {
    int n = atomic_load(&region_count);
    if (n >= (int)(sizeof regions / sizeof regions[0])) return;
    regions[n].start = start;
    regions[n].end = start + size;
    atomic_store(&region_count, n + 1);
}

void nst_guard_add_ring(void *base, size_t heartbeat_offset, size_t acknowledged_offset) {
    int n = atomic_load(&ring_count);
    if (n >= (int)(sizeof rings / sizeof rings[0])) return;
    rings[n].base = base;
    rings[n].heartbeat = heartbeat_offset;
    rings[n].acknowledged = acknowledged_offset;
    atomic_store(&ring_count, n + 1);
}

void nst_guard_remove_ring(void *base) {
    int n = atomic_load(&ring_count);
    for (int i = 0; i < n; i++)
        if (rings[i].base == base) {
            rings[i] = rings[n - 1];
            atomic_store(&ring_count, n - 1);
            return;
        }
}

void nst_guard_reset(void) {
    struct guard_patch *p = atomic_load(&patches);
    int n = atomic_load(&patch_count);
    for (int i = 0; i < n; i++) atomic_store(&p[i].pid, 0);
    struct guard_thread *t = atomic_load(&threads);
    n = atomic_load(&thread_count);
    for (int i = 0; i < n; i++) atomic_store(&t[i].tid, 0);
    atomic_store(&ring_count, 0);
    atomic_store(&region_count, 0);
}

// MARK: The handler's tools (raw system calls only)

static long sys_ptrace(long request, pid_t tid, void *addr, void *data) {
    return syscall(SYS_ptrace, request, tid, addr, data);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pause_ms(long ms) {
    struct timespec ts = {0, ms * 1000000};
    nanosleep(&ts, NULL);
}

static char *put_text(char *out, char *end, const char *text) {
    while (*text && out < end) *out++ = *text++;
    return out;
}

static char *put_number(char *out, char *end, long value) {
    char digits[24];
    int n = 0;
    unsigned long v = value < 0 ? (unsigned long)(-(value + 1)) + 1 : (unsigned long)value;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v && n < 24);
    if (value < 0 && out < end) *out++ = '-';
    while (n > 0 && out < end) *out++ = digits[--n];
    return out;
}

static int open_proc(pid_t pid, pid_t tid, const char *leaf, int flags) {
    char path[96], *end = path + sizeof path - 1, *p = put_text(path, end, "/proc/");
    p = put_number(p, end, pid);
    if (tid > 0) { p = put_text(p, end, "/task/"); p = put_number(p, end, tid); }
    p = put_text(p, end, "/");
    p = put_text(p, end, leaf);
    *p = 0;
    return open(path, flags | O_CLOEXEC);
}

/// The state letter of /proc/PID/task/TID/stat, 0 when the thread is gone.
static char thread_state(pid_t pid, pid_t tid) {
    int fd = open_proc(pid, tid, "stat", O_RDONLY);
    if (fd < 0) return 0;
    char buffer[512];
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return 0;
    for (ssize_t i = n - 1; i > 0; i--)
        if (buffer[i] == ')' && i + 2 < n) return buffer[i + 2];
    return 0;
}

/// Whether SIGTRAP is pending for the thread alone (SigPnd of its status).
static bool trap_pending(pid_t pid, pid_t tid) {
    int fd = open_proc(pid, tid, "status", O_RDONLY);
    if (fd < 0) return false;
    char buffer[2048];
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return false;
    buffer[n] = 0;
    const char *line = strstr(buffer, "\nSigPnd:");
    if (!line) return false;
    line += 8;
    while (*line == ' ' || *line == '\t') line++;
    uint64_t mask = 0;
    for (; *line && *line != '\n'; line++) {
        int digit = *line >= '0' && *line <= '9' ? *line - '0' : *line >= 'a' && *line <= 'f' ? *line - 'a' + 10 : -1;
        if (digit < 0) break;
        mask = mask << 4 | (uint64_t)digit;
    }
    return mask & (1u << (SIGTRAP - 1));
}

// Tasks nstrace traces that the engine had not registered yet (a new thread or child whose first
// stop came before its parent's event), found in /proc by the handler.
static struct guard_thread extras[1024];
static int extra_count;

static struct guard_thread *find_thread(pid_t tid) {
    struct guard_thread *table = atomic_load(&threads);
    int count = atomic_load(&thread_count);
    for (int i = 0; i < count; i++)
        if (atomic_load(&table[i].tid) == tid) return &table[i];
    for (int i = 0; i < extra_count; i++)
        if (atomic_load(&extras[i].tid) == tid) return &extras[i];
    return NULL;
}

static long parse_number(const char *text) {
    long value = 0;
    if (*text < '0' || *text > '9') return -1;
    for (; *text >= '0' && *text <= '9'; text++) value = value * 10 + (*text - '0');
    return *text ? -1 : value;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/// Calls `visit(number, context)` for each numeric entry of the directory at `path`.
static void each_number(const char *path, void (*visit)(long, void *), void *context) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    char buffer[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buffer, sizeof buffer);
        if (n <= 0) break;
        for (long at = 0; at < n;) {
            struct linux_dirent64 *entry = (struct linux_dirent64 *)(buffer + at);
            long number = parse_number(entry->d_name);
            if (number > 0) visit(number, context);
            at += entry->d_reclen;
        }
    }
    close(fd);
}

/// The TracerPid of a task, -1 when it cannot be read.
static long tracer_of(pid_t pid, pid_t tid) {
    int fd = open_proc(pid, tid, "status", O_RDONLY);
    if (fd < 0) return -1;
    char buffer[2048];
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return -1;
    buffer[n] = 0;
    const char *line = strstr(buffer, "\nTracerPid:");
    if (!line) return -1;
    line += 11;
    while (*line == ' ' || *line == '\t') line++;
    long value = 0;
    for (; *line >= '0' && *line <= '9'; line++) value = value * 10 + (*line - '0');
    return value;
}

static void visit_task(long tid, void *context) {
    pid_t pid = *(pid_t *)context;
    if (find_thread((pid_t)tid) || extra_count >= (int)(sizeof extras / sizeof extras[0])) return;
    if (tracer_of(pid, (pid_t)tid) != atomic_load(&tracer_tid)) return;
    struct guard_thread *t = &extras[extra_count++];
    memset(t, 0, sizeof *t);
    t->pid = pid;
    atomic_store(&t->tid, (pid_t)tid);
}

static void visit_process(long pid, void *context) {
    (void)context;
    char path[48], *end = path + sizeof path - 1, *p = put_text(path, end, "/proc/");
    p = put_number(p, end, pid);
    p = put_text(p, end, "/task");
    *p = 0;
    pid_t tgid = (pid_t)pid;
    each_number(path, visit_task, &tgid);
}

/// Every task whose tracer is nstrace, whether or not the engine knew it.
static void discover_tracees(void) { each_number("/proc", visit_process, NULL); }

/// The patch of `kind` at `address` in `pid`'s memory, if any.
static struct guard_patch *find_patch(pid_t pid, uint64_t address, int kind) {
    struct guard_patch *table = atomic_load(&patches);
    int count = atomic_load(&patch_count);
    for (int i = 0; i < count; i++)
        if (atomic_load(&table[i].pid) == pid && table[i].address == address && table[i].kind == kind) return &table[i];
    return NULL;
}

static bool in_region(uint64_t address) {
    int n = atomic_load(&region_count);
    for (int i = 0; i < n; i++)
        if (address >= regions[i].start && address < regions[i].end) return true;
    return false;
}

static uint64_t *gpr(struct user_regs_struct *r, int number) {
    switch (number) {
    case 0: return (uint64_t *)&r->rax;  case 1: return (uint64_t *)&r->rcx;
    case 2: return (uint64_t *)&r->rdx;  case 3: return (uint64_t *)&r->rbx;
    case 4: return (uint64_t *)&r->rsp;  case 5: return (uint64_t *)&r->rbp;
    case 6: return (uint64_t *)&r->rsi;  case 7: return (uint64_t *)&r->rdi;
    case 8: return (uint64_t *)&r->r8;   case 9: return (uint64_t *)&r->r9;
    case 10: return (uint64_t *)&r->r10; case 11: return (uint64_t *)&r->r11;
    case 12: return (uint64_t *)&r->r12; case 13: return (uint64_t *)&r->r13;
    case 14: return (uint64_t *)&r->r14; case 15: return (uint64_t *)&r->r15;
    default: return NULL;
    }
}

// One /proc/PID/mem descriptor at a time, reopened when the pid changes.
static pid_t mem_pid;
static int mem_fd = -1;

static int memory_of(pid_t pid) {
    if (pid != mem_pid) {
        if (mem_fd >= 0) close(mem_fd);
        mem_fd = open_proc(pid, 0, "mem", O_RDWR);
        mem_pid = pid;
    }
    return mem_fd;
}

/// Puts one patch's original bytes back where its bytes are still in memory. 1 when restored.
static int restore_patch(struct guard_patch *p) {
    pid_t pid = atomic_load(&p->pid);
    if (pid == 0 || p->restored) return 0;
    int fd = memory_of(pid);
    if (fd < 0) return 0;
    uint8_t now[16];
    off_t at = (off_t)p->address;
    if (pread(fd, now, p->length, at) != p->length || memcmp(now, p->patched, p->length) != 0) return 0;
    if (pwrite(fd, p->original, p->length, at) != p->length) return 0;
    p->restored = 1;
    return 1;
}

static uint8_t byte_at(pid_t pid, uint64_t address, bool *ok) {
    uint8_t b = 0;
    int fd = memory_of(pid);
    *ok = fd >= 0 && pread(fd, &b, 1, (off_t)address) == 1;
    return b;
}

/// Waits (polling, with a deadline) for `tid`'s next stop; false when it ended or never stopped.
static bool wait_stop(pid_t tid, int *status) {
    uint64_t deadline = now_ns() + 1000000000u;
    while (now_ns() < deadline) {
        pid_t w = (pid_t)syscall(SYS_wait4, tid, status, __WALL | WNOHANG, NULL);
        if (w == tid) return WIFSTOPPED(*status);
        if (w < 0 && errno != EINTR) return false;
        pause_ms(1);
    }
    return false;
}

/// Puts a stopped thread back on the program's own instruction stream. Returns the signal to deliver
/// as it leaves (0 for none); `requeue` gets a signal to send again after the detach.
static int settle(struct guard_thread *t, siginfo_t *requeue, bool *at_delivery) {
    pid_t tid = atomic_load(&t->tid), pid = t->pid;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    bool has_info = sys_ptrace(PTRACE_GETSIGINFO, tid, NULL, &info) == 0;
    // A signal-delivery-stop (not an event stop, whose si_code carries the event, nor a syscall stop).
    bool delivery = has_info && !(info.si_code >> 8) && info.si_code != (SIGTRAP | 0x80);
    if (trap_pending(pid, tid)) {
        // An int3 or a step trap queued behind this stop (job-control traps come first): let it
        // report, so that it is handled here and not delivered. A signal this stop carried is sent
        // again afterwards.
        if (delivery && !(info.si_signo == SIGTRAP && info.si_code > 0)) *requeue = info;
        int status;
        if (sys_ptrace(PTRACE_CONT, tid, NULL, NULL) != 0 || !wait_stop(tid, &status)) return 0;
        t->held = 0;
        has_info = sys_ptrace(PTRACE_GETSIGINFO, tid, NULL, &info) == 0;
        delivery = has_info && !(info.si_code >> 8) && info.si_code != (SIGTRAP | 0x80);
    }
    *at_delivery = delivery;
    struct user_regs_struct regs;
    if (sys_ptrace(PTRACE_GETREGS, tid, NULL, &regs) != 0) return 0;
    uint64_t rip = regs.rip;
    int deliver = 0;
    if (delivery && info.si_signo == SIGTRAP && info.si_code > 0) {
        // A trap the kernel raised: an int3 (SI_KERNEL) or a single step; nstrace's own unless the
        // program has an int3 of its own there. A thread nstrace holds says itself where it belongs.
        if (info.si_code == 0x80 && !t->stepping) {
            if (t->held && t->rewind) regs.rip = t->rewind;
            else if (t->held && t->passed) {}
            else if (find_patch(pid, rip - 1, NST_GUARD_INT3)) regs.rip = rip - 1;
            else if (!find_patch(pid, rip - 1, NST_GUARD_TRAP) && !in_region(rip)) {
                bool ok;
                if (byte_at(pid, rip - 1, &ok) == 0xcc && ok) deliver = SIGTRAP;
            }
        }
    } else if (delivery) {
        deliver = info.si_signo;
    }
    if (t->stepping) {
        uint64_t *scratch = gpr(&regs, t->scratch_register);
        if (regs.rip == t->step_end) {
            regs.rip = t->step_resume;
            if (scratch) *scratch = t->step_saved_scratch;
            int fd = memory_of(pid);
            uint64_t word = 0;
            // pushf single-stepped pushed RFLAGS with TF set.
            if (t->clears_tf && fd >= 0 && pread(fd, &word, 8, (off_t)regs.rsp) == 8) {
                word &= ~(uint64_t)0x100;
                (void)!pwrite(fd, &word, 8, (off_t)regs.rsp);
            }
        } else if (regs.rip >= t->step_slot && regs.rip < t->step_end) {
            regs.rip = t->step_site;
            if (scratch) *scratch = t->step_saved_scratch;
        } else if (t->rewind) {
            regs.rip = t->rewind;
        }
    }
    if (t->injecting) regs = t->injection_saved;
    if (t->injecting || regs.rip != rip) sys_ptrace(PTRACE_SETREGS, tid, NULL, &regs);
    return deliver;
}

/// The k-th thread of the engine's table followed by those found in /proc (k < count + extra_count).
static struct guard_thread *nth_thread(struct guard_thread *table, int count, int k) {
    return k < count ? &table[k] : &extras[k - count];
}

/// Interrupts every thread not yet stopped, and collects stops until all are stopped or gone, or
/// `deadline`. A thread that cannot stop in time (in uninterruptible sleep, blocked in vfork) is in the
/// kernel, not in the code being restored.
static void collect(struct guard_thread *table, int count, uint64_t deadline) {
    for (int k = 0; k < count + extra_count; k++) {
        struct guard_thread *t = nth_thread(table, count, k);
        pid_t tid = atomic_load(&t->tid);
        if (!tid || t->interrupted || t->gone) continue;
        t->interrupted = 1;
        // ESRCH: gone, or already stopped and not to be interrupted (shown as 't' below).
        sys_ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
    }
    for (;;) {
        int status;
        pid_t w;
        while ((w = (pid_t)syscall(SYS_wait4, -1, &status, __WALL | WNOHANG, NULL)) > 0) {
            struct guard_thread *t = find_thread(w);
            if (!t) continue;
            if (WIFSTOPPED(status)) t->reported = 1;
            else t->gone = 1;
        }
        int waiting = 0;
        for (int k = 0; k < count + extra_count; k++) {
            struct guard_thread *t = nth_thread(table, count, k);
            pid_t tid = atomic_load(&t->tid);
            if (!tid || t->reported || t->gone || t->detached) continue;
            char state = thread_state(t->pid, tid);
            if (state == 't') t->reported = 1;
            else if (state == 0 || state == 'Z' || state == 'X') t->gone = 1;
            else if (tracer_of(t->pid, tid) != atomic_load(&tracer_tid)) t->gone = 1;  // not nstrace's (any more)
            else waiting++;
        }
        if (!waiting || now_ns() > deadline) return;
        pause_ms(1);
    }
}

/// Settles and detaches every stopped thread not yet detached.
static void detach_stopped(struct guard_thread *list, int count, int *detached) {
    for (int i = 0; i < count; i++) {
        struct guard_thread *t = &list[i];
        pid_t tid = atomic_load(&t->tid);
        if (!tid || !t->reported || t->detached) continue;
        siginfo_t requeue;
        requeue.si_signo = 0;
        bool at_delivery = false;
        int signal = settle(t, &requeue, &at_delivery);
        int first = 0;
        siginfo_t *held = t->held_signals;
        int held_count = t->held_count;
        // Only from a signal-delivery-stop does a detach deliver a signal, with the siginfo set here.
        if (!signal && at_delivery && held_count > 0 && sys_ptrace(PTRACE_SETSIGINFO, tid, NULL, &held[0]) == 0) {
            signal = held[0].si_signo;
            first = 1;
        }
        t->detached = 1;
        if (sys_ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)signal) == 0) (*detached)++;
        for (int h = first; h < held_count; h++) nst_requeue_signal(t->pid, tid, &held[h]);
        if (requeue.si_signo) nst_requeue_signal(t->pid, tid, &requeue);
    }
}

/// Stops every thread, restores every byte, settles and detaches every thread; again for threads
/// that stop late (a vfork parent once its child is let go) or appear meanwhile. Returns the places
/// restored; `detached` gets the threads let go.
static int restore_all(int *detached) {
    struct guard_thread *table = atomic_load(&threads);
    int count = atomic_load(&thread_count);
    for (int i = 0; i < count; i++) table[i].interrupted = table[i].reported = table[i].gone = table[i].detached = 0;
    discover_tracees();
    uint64_t start = now_ns();
    collect(table, count, start + 2000000000u);

    // With every thread stopped: int3s first (one may sit on the first byte of a window's jump).
    int restored = 0;
    for (int kind = NST_GUARD_INT3; kind <= NST_GUARD_OTHER; kind++) {
        struct guard_patch *p = atomic_load(&patches);
        int n = atomic_load(&patch_count);
        for (int i = 0; i < n; i++)
            if (p[i].kind == kind) restored += restore_patch(&p[i]);
    }
    // No pad waits for nstrace any more.
    int rn = atomic_load(&ring_count);
    for (int i = 0; i < rn; i++) {
        *(volatile uint64_t *)(rings[i].base + rings[i].heartbeat) = 0;
        *(volatile uint64_t *)(rings[i].base + rings[i].acknowledged) = UINT64_MAX;
    }

    *detached = 0;
    for (int round = 0; round < 50; round++) {
        detach_stopped(table, count, detached);
        detach_stopped(extras, extra_count, detached);
        int before = extra_count;
        discover_tracees();
        bool left = extra_count != before;
        for (int k = 0; k < count + extra_count && !left; k++) {
            struct guard_thread *t = nth_thread(table, count, k);
            left = atomic_load(&t->tid) && !t->detached && !t->gone;
        }
        if (!left || now_ns() > start + 5000000000u) break;
        collect(table, count, now_ns() + 100000000u);
    }
    return restored;
}

static void report(int sig, int restored, int detached) {
    char line[256], *end = line + sizeof line - 1, *p = line;
    p = put_text(p, end, "nstrace: internal error (signal ");
    p = put_number(p, end, sig);
    p = put_text(p, end, "): put back ");
    p = put_number(p, end, restored);
    p = put_text(p, end, " patched places and detached from ");
    p = put_number(p, end, detached);
    p = put_text(p, end, " threads; the traced program runs on\n");
    (void)!write(2, line, (size_t)(p - line));
}

static void restore_once(int sig) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&guard_state, &expected, 1)) {
        int detached = 0, restored = restore_all(&detached);
        report(sig, restored, detached);
        atomic_store(&guard_state, 2);
        return;
    }
    // Another thread is restoring: wait for it.
    for (int i = 0; i < 10000 && atomic_load(&guard_state) != 2; i++) pause_ms(1);
}

static void chain(int sig) {
    // The previous handler (or the default action) takes the signal when the faulting instruction
    // runs again, or when abort() raises it again.
    for (size_t i = 0; i < sizeof guarded_signals / sizeof guarded_signals[0]; i++)
        if (guarded_signals[i] == sig) sigaction(sig, &previous[i], NULL);
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    (void)info; (void)context;
    int saved_errno = errno;
    pid_t tracer = atomic_load(&tracer_tid);
    if (tracer == 0 || (pid_t)syscall(SYS_gettid) == tracer) {
        if (tracer) restore_once(sig);
    } else if (atomic_load(&guard_state) == 0) {
        // Only the tracing thread may make ptrace requests: it does the work, this thread waits.
        syscall(SYS_tgkill, getpid(), tracer, route_signal);
        for (int i = 0; i < 10000 && atomic_load(&guard_state) != 2; i++) pause_ms(1);
    }
    chain(sig);
    errno = saved_errno;
}

static void on_route(int sig) {
    (void)sig;
    int saved_errno = errno;
    restore_once(SIGABRT);
    errno = saved_errno;
}

void nst_guard_install(pid_t tracer) {
    atomic_store(&tracer_tid, tracer);
    static bool installed;
    if (installed) return;
    installed = true;
    // A stack overflow in the engine thread must still find a stack to run the handler on.
    stack_t stack = {.ss_sp = alternate_stack, .ss_size = sizeof alternate_stack, .ss_flags = 0};
    sigaltstack(&stack, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof guarded_signals / sizeof guarded_signals[0]; i++)
        sigaction(guarded_signals[i], &sa, &previous[i]);
    route_signal = SIGRTMIN + 3;
    struct sigaction route;
    memset(&route, 0, sizeof route);
    route.sa_handler = on_route;
    route.sa_flags = SA_ONSTACK;
    sigfillset(&route.sa_mask);
    sigaction(route_signal, &route, NULL);
}

