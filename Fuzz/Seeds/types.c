/* Seed for the Symbols fuzzer: every kind of parameter the ABI classifier and type namer read. */
#include <stdarg.h>

struct pair { long a; double b; };
struct small { char c; short s; int i; };
struct big { long x[5]; };
union number { int i; float f; double d; };
enum colour { RED, GREEN = 7, BLUE = -1 };
struct bits { unsigned a : 3; unsigned b : 13; int c : 7; long d : 40; };
struct nested { struct small s; float f[2]; union number n; };
struct empty_tail { int x; struct {} nothing; };
struct holey { int : 24; };  /* no named member: DWARF gives it no member at all */
struct with_holey { int x; struct holey h; };
typedef struct pair pair_t;
typedef const char *name_t;

volatile long sink;

__attribute__((noinline)) long take_pair(struct pair p, pair_t q) { return p.a + (long)q.b; }
__attribute__((noinline)) int take_small(struct small s, struct bits b) { return s.c + s.i + b.b + b.c; }
__attribute__((noinline)) long take_big(struct big b, long r1, long r2, long r3, long r4, long r5, long r6, long stack) { return b.x[4] + r6 + stack; }
__attribute__((noinline)) double take_union(union number n, enum colour c, float f, double d) { return n.d + c + f + d; }
__attribute__((noinline)) struct nested make_nested(int i, name_t name, const volatile int *p, int (*fn)(int)) {
    struct nested n = {{(char)i, 2, 3}, {1, 2}, {4}};
    sink = (long)name + (long)p + (long)fn;
    return n;
}
__attribute__((noinline)) struct big make_big(int a[4], char **argv) { struct big b = {{a[0], a[1], (long)argv}}; return b; }
__attribute__((noinline)) long sum(int count, ...) {
    va_list ap; long total = 0;
    va_start(ap, count);
    for (int i = 0; i < count; i++) total += va_arg(ap, long);
    va_end(ap);
    return total;
}
__attribute__((noinline)) int dispatch(int op, int x) {
    switch (op) {
    case 0: return x + 1; case 1: return x * 3; case 2: return x - 7; case 3: return x << 2;
    case 4: return x ^ 0x55; case 5: return x / 3; case 6: return ~x; case 7: return x & 0xf0;
    default: return 0;
    }
}
__attribute__((noinline)) struct empty_tail take_empty(struct empty_tail e) { return e; }
__attribute__((noinline)) int take_holey(struct with_holey w) { return w.x; }
static int twice(int x) { return 2 * x; }

void _start(void) {
    struct pair p = {1, 2};
    struct small s = {1, 2, 3};
    struct bits b = {1, 2, 3, 4};
    struct big g = {{1, 2, 3, 4, 5}};
    union number n = {5};
    int a[4] = {1, 2, 3, 4};
    struct empty_tail e = {1};
    sink = take_pair(p, p) + take_small(s, b) + take_big(g, 1, 2, 3, 4, 5, 6, 7) + (long)take_union(n, BLUE, 1, 2);
    sink += make_nested(1, "x", 0, twice).s.i + make_big(a, 0).x[0] + sum(3, 1L, 2L, 3L) + dispatch(sink & 7, 3);
    struct with_holey w = {1};
    sink += take_empty(e).x + take_holey(w);
    for (;;) __asm__ volatile("hlt");
}
