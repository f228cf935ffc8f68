// The classic tracer (ltrace; the golang.org/x/debug ptrace demo): on a hit, put the original byte
// back, single-step the thread over it, and write the int3 again. Other threads keep running all the
// while — and any of them that passes the site while the byte is restored is not seen. Those are the
// missed calls this baseline exists to show.
#include "tracer.h"

/// Single-steps `tid` over the restored instruction; returns 0 if the thread died meanwhile.
static int step_over(pid_t tid) {
    nsb_set_rip(tid, nsb_site);
    nsb_write_byte(nsb_original);
    int status;
    for (;;) {
        if (ptrace(PTRACE_SINGLESTEP, tid, 0, 0) != 0) {
            if (errno == ESRCH) break;
            nsb_die("PTRACE_SINGLESTEP");
        }
        if (nsb_wait(tid, &status) < 0) break;
        if (!WIFSTOPPED(status)) { nsb_note_exit(tid, status); nsb_write_byte(0xcc); return 0; }
        // Anything but the step's own trap (a job-control stop) just means: step again.
        if (nsb_event(status) == 0 && WSTOPSIG(status) == SIGTRAP) break;
    }
    nsb_write_byte(0xcc);
    return 1;
}

int main(int argc, char **argv) {
    nsb_launch(argc, argv, PTRACE_O_TRACECLONE);
    nsb_cont(nsb_pid, 0);
    int status;
    pid_t tid;
    while ((tid = nsb_wait(-1, &status)) > 0) {
        if (!WIFSTOPPED(status)) { nsb_note_exit(tid, status); continue; }
        int sig = WSTOPSIG(status);
        if (nsb_event(status) == 0 && sig == SIGTRAP && nsb_rip(tid) == nsb_site + 1) {
            nsb_hits++;
            if (step_over(tid)) nsb_cont(tid, 0);
        } else {
            nsb_cont(tid, nsb_event(status) || sig == SIGTRAP ? 0 : sig);
        }
    }
    return nsb_report();
}
