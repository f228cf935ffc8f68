// setjmp and sigsetjmp, each returning again through longjmp and siglongjmp with the values in
// `jumps` (a longjmp with 0 makes setjmp return 1). Prints its buffers' addresses (libc's start-up
// code calls setjmp too) and every return it sees: the ground truth.
#include <setjmp.h>
#include <stdio.h>

static jmp_buf env;
static sigjmp_buf signalEnv;
static const int jumps[] = {2, 0, 5};
static const int signalJumps[] = {7, 8};

__attribute__((noinline)) static void jumpBack(int value) {
    longjmp(env, value);
}

int main(void) {
    static volatile int round = 0, signalRound = 0;
    printf("env %p\nsignal env %p\n", (void *)env, (void *)signalEnv);
    int r = setjmp(env);
    printf("setjmp returned %d\n", r);
    if (round < 3) jumpBack(jumps[round++]);
    r = sigsetjmp(signalEnv, 1);
    printf("sigsetjmp returned %d\n", r);
    if (signalRound < 2) siglongjmp(signalEnv, signalJumps[signalRound++]);
    return 0;
}
