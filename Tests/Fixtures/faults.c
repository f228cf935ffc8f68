// Traced functions whose first instruction faults: an indirect jump through a bad pointer (which the
// tracer emulates) and a load through a bad pointer (which it relocates). The program catches each
// SIGSEGV and carries on, so a tracer must deliver the fault exactly as the CPU would have, once.
// A third kind of fault is fixed by the handler, which then returns: the faulting instruction runs
// again, and it is still one call. Usage: faults N. Prints "calls fx_jump_through C", "calls fx_load C",
// "faults F" and "repaired R".
#include <setjmp.h>
#include <sys/mman.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

long fx_jump_through(void **target);
asm(".text\n.globl fx_jump_through\n.type fx_jump_through,@function\nfx_jump_through:\n"
    "  jmp *(%rdi)\n.size fx_jump_through, .-fx_jump_through\n");

long fx_load(long *p);
asm(".text\n.globl fx_load\n.type fx_load,@function\nfx_load:\n"
    "  movq (%rdi), %rax\n  ret\n.size fx_load, .-fx_load\n");

static long seven(void) { return 7; }

static sigjmp_buf recover_point;
static volatile sig_atomic_t faults, repaired;
static char *guarded_page;

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)context;
    faults++;
    if ((char *)info->si_addr >= guarded_page && (char *)info->si_addr < guarded_page + 4096) {
        // Repairable: open the page and return, so the load runs again and succeeds.
        mprotect(guarded_page, 4096, PROT_READ | PROT_WRITE);
        repaired++;
        return;
    }
    siglongjmp(recover_point, 1);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    long good = 41, wrong = 0;
    void *target = (void *)seven;
    guarded_page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < n; i++) {
        if (fx_jump_through(&target) != 7) wrong++;
        if (fx_load(&good) != 41) wrong++;
        if (sigsetjmp(recover_point, 1) == 0) fx_jump_through((void **)8);
        if (sigsetjmp(recover_point, 1) == 0) fx_load((long *)16);
        *(long *)guarded_page = 1000 + i;
        mprotect(guarded_page, 4096, PROT_NONE);
        if (fx_load((long *)guarded_page) != 1000 + i) wrong++;
    }
    printf("calls fx_jump_through %d\n", 2 * n);
    printf("calls fx_load %d\n", 3 * n);
    printf("faults %d\n", (int)faults);
    printf("repaired %d\n", (int)repaired);
    printf("wrong %ld\n", wrong);
    return wrong == 0 && faults == 3 * n && repaired == n ? 0 : 1;
}
