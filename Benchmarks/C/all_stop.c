// All-stop, as ltrace and Delve do it when they must not miss: on a hit, stop every other thread
// (PTRACE_INTERRUPT, then wait until each one has stopped), put the original byte back, single-step
// the thread over it, write the int3 again, and resume everyone. Nothing is missed — no thread runs
// while the byte is restored — and every thread stalls on every hit.
#include "tracer.h"

enum state { RUNNING, STOPPING, STOPPED };

struct thread {
    pid_t tid;
    enum state state;
    int interrupt_pending;  // PTRACE_INTERRUPT sent, its PTRACE_EVENT_STOP not yet seen
    int hit;                // stopped on the int3, not yet stepped over
    int signal;             // a signal to deliver when resumed
};

static struct thread threads[NSB_MAX_THREADS];
static int thread_count;

static struct thread *find(pid_t tid) {
    for (int i = 0; i < thread_count; i++) if (threads[i].tid == tid) return &threads[i];
    return NULL;
}

static struct thread *add(pid_t tid) {
    if (thread_count == NSB_MAX_THREADS) { errno = ENOMEM; nsb_die("too many threads"); }
    threads[thread_count] = (struct thread){.tid = tid, .state = STOPPED};
    return &threads[thread_count++];
}

static void forget(pid_t tid) {
    struct thread *t = find(tid);
    if (t) *t = threads[--thread_count];
}

/// Takes in one stop while the world is being stopped: whatever it is, the thread is now stopped.
static void absorb(pid_t tid, int status) {
    if (!WIFSTOPPED(status)) { nsb_note_exit(tid, status); forget(tid); return; }
    struct thread *t = find(tid);
    if (!t) t = add(tid);  // a new thread's first stop
    t->state = STOPPED;
    int sig = WSTOPSIG(status), event = nsb_event(status);
    if (event == PTRACE_EVENT_STOP) {
        t->interrupt_pending = 0;
    } else if (event == 0 && sig == SIGTRAP) {
        if (nsb_rip(tid) == nsb_site + 1) { t->hit = 1; nsb_hits++; }
    } else if (event == 0) {
        t->signal = sig;
    }
}

/// With every other thread stopped: over the restored byte, one instruction, and back.
static void step_over(struct thread *t) {
    nsb_set_rip(t->tid, nsb_site);
    nsb_write_byte(nsb_original);
    int status;
    for (;;) {
        if (ptrace(PTRACE_SINGLESTEP, t->tid, 0, 0) != 0) {
            if (errno == ESRCH) break;
            nsb_die("PTRACE_SINGLESTEP");
        }
        if (nsb_wait(t->tid, &status) < 0) break;
        if (!WIFSTOPPED(status)) { nsb_note_exit(t->tid, status); forget(t->tid); break; }
        // A pending interrupt fires before the instruction runs: consume it and step again.
        if (nsb_event(status) == PTRACE_EVENT_STOP) { t->interrupt_pending = 0; continue; }
        if (nsb_event(status) == 0 && WSTOPSIG(status) == SIGTRAP) break;
    }
    nsb_write_byte(0xcc);
    t->hit = 0;
}

static void stop_the_world_for(pid_t hit_tid) {
    struct thread *first = find(hit_tid);
    if (!first) first = add(hit_tid);
    first->state = STOPPED;
    first->hit = 1;
    nsb_hits++;
    for (int i = 0; i < thread_count; i++) {
        struct thread *t = &threads[i];
        if (t->state != RUNNING) continue;
        if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) != 0) {
            if (errno == ESRCH) continue;  // exiting: waitpid reports it
            nsb_die("PTRACE_INTERRUPT");
        }
        t->interrupt_pending = 1;
        t->state = STOPPING;
    }
    for (;;) {
        int stopping = 0;
        for (int i = 0; i < thread_count; i++) stopping += threads[i].state == STOPPING;
        if (!stopping) break;
        int status;
        pid_t tid = nsb_wait(-1, &status);
        if (tid < 0) return;
        absorb(tid, status);
    }
    // The thread that hit first, then any other that had hit the int3 before it was stopped.
    pid_t order[NSB_MAX_THREADS];
    int n = 0;
    order[n++] = hit_tid;
    for (int i = 0; i < thread_count; i++) if (threads[i].hit && threads[i].tid != hit_tid) order[n++] = threads[i].tid;
    for (int i = 0; i < n; i++) {
        struct thread *t = find(order[i]);
        if (t && t->hit) step_over(t);
    }
    for (int i = 0; i < thread_count; i++) {
        struct thread *t = &threads[i];
        if (t->state != STOPPED) continue;
        t->state = RUNNING;
        nsb_cont(t->tid, t->signal);
        t->signal = 0;
    }
}

int main(int argc, char **argv) {
    nsb_launch(argc, argv, PTRACE_O_TRACECLONE);
    add(nsb_pid)->state = RUNNING;
    nsb_cont(nsb_pid, 0);
    int status;
    pid_t tid;
    while ((tid = nsb_wait(-1, &status)) > 0) {
        if (!WIFSTOPPED(status)) { nsb_note_exit(tid, status); forget(tid); continue; }
        struct thread *t = find(tid);
        if (!t) t = add(tid);
        int sig = WSTOPSIG(status), event = nsb_event(status);
        if (event == 0 && sig == SIGTRAP && nsb_rip(tid) == nsb_site + 1) {
            stop_the_world_for(tid);
            continue;
        }
        // A stale interrupt's stop, a new thread's first stop, a clone event, or a signal.
        if (event == PTRACE_EVENT_STOP) t->interrupt_pending = 0;
        t->state = RUNNING;
        nsb_cont(tid, event || sig == SIGTRAP ? 0 : sig);
    }
    return nsb_report();
}
