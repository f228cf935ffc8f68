// The floor: the least a ptrace tracer can do per breakpoint hit. The int3 sits on a one-byte `nop`,
// so after the trap RIP already points at the next instruction: wait for the stop, count it,
// continue. No registers read, no memory touched, no single-step. Every other contender does at least
// this much per call, so its overhead reads as a multiple of this one.
#include "tracer.h"

int main(int argc, char **argv) {
    nsb_launch(argc, argv, PTRACE_O_TRACECLONE);
    if (nsb_original != 0x90) {
        fprintf(stderr, "floor: the site must be a one-byte nop (found 0x%02x)\n", nsb_original);
        kill(nsb_pid, SIGKILL);
        return 2;
    }
    nsb_cont(nsb_pid, 0);
    int status;
    pid_t tid;
    while ((tid = nsb_wait(-1, &status)) > 0) {
        if (!WIFSTOPPED(status)) { nsb_note_exit(tid, status); continue; }
        int sig = WSTOPSIG(status);
        if (nsb_event(status) == 0 && sig == SIGTRAP) {
            nsb_hits++;
            nsb_cont(tid, 0);
        } else {
            // New threads' first stops, clone events: nothing to do but go on.
            nsb_cont(tid, nsb_event(status) ? 0 : sig);
        }
    }
    return nsb_report();
}
