/* Seed for the Symbols fuzzer: an .eh_frame with an LSDA and landing pads (cleanups run by the
 * unwinder), without a C library: the personality routine is a stub nothing calls. */
volatile long sink;

int __gcc_personality_v0(void) { return 0; }
void _Unwind_Resume(void *e) { for (;;) __asm__ volatile("hlt"); }

__attribute__((noinline, weak)) void may_throw(long x) { sink = x; }
static void release(long *p) { sink += *p; }

__attribute__((noinline)) long guarded(long x) {
    long a __attribute__((cleanup(release))) = x;
    may_throw(a);
    long b __attribute__((cleanup(release))) = x + 1;
    may_throw(b);
    return a + b;
}

void _start(void) {
    sink = guarded(3);
    for (;;) __asm__ volatile("hlt");
}
