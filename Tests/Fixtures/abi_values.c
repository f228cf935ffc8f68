// Every class of the System V x86-64 ABI, as arguments and as results: INTEGER and SSE scalars,
// x87 `long double` (on the stack; returned in st(0)), `__int128` (two registers, or the stack when
// they run out), `_Complex`, small structs and unions (per eightbyte in general and vector registers),
// large ones (on the stack; returned through the hidden pointer in rdi, which shifts the integer
// arguments), strings. Each call is made once, and the program prints what it passed and got
// (`mixed_div 4 2.5 3 = 4.8`), so a test has the values from both sides.
//
// Usage:
//   abi_values calls    each ab_ function once
//   abi_values deref    pointers to a struct and to a scalar, a dangling one and NULL
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct ab_small { int i; float f; };             // one eightbyte, INTEGER (int and float merged)
struct ab_mixed { long n; double d; };           // INTEGER, SSE
struct ab_point { double x, y; };                // SSE, SSE
struct ab_large { long a, b; double d; char tag[8]; struct ab_point p; };  // 56 bytes: MEMORY
union ab_word { long l; double d; };             // INTEGER
struct ab_nested { struct ab_small s; short arr[3]; unsigned flag : 1; int bits : 5; };  // 16 bytes

#define NOINLINE __attribute__((noinline, noipa))

NOINLINE long double mixed_div(long long a, long double b, int c) { return a / b * c; }
NOINLINE long double ab_ld_scale(long double x, int k) { return x * k; }
NOINLINE __int128 ab_i128_mul(__int128 a, long b) { return a * b; }
NOINLINE unsigned __int128 ab_u128_shift(unsigned __int128 a, int by) { return a << by; }
NOINLINE double ab_floats(float a, double b) { return a + b; }
NOINLINE long ab_string(const char *s, int n) { return (long)strlen(s) + n; }
NOINLINE struct ab_small ab_small_make(int i, float f) { return (struct ab_small){i, f}; }
NOINLINE struct ab_mixed ab_mixed_swap(struct ab_mixed m) { return (struct ab_mixed){m.n + 1, m.d * 2}; }
NOINLINE struct ab_point ab_point_mid(struct ab_point a, struct ab_point b) {
    return (struct ab_point){(a.x + b.x) / 2, (a.y + b.y) / 2};
}
NOINLINE struct ab_large ab_large_make(long a, double d, const char *tag) {
    struct ab_large l = {a, a * 2, d, {0}, {d, -d}};
    strncpy(l.tag, tag, sizeof l.tag - 1);
    return l;
}
NOINLINE long ab_large_sum(struct ab_large l, int k) { return l.a + l.b + (long)l.d + k; }
// Five integer registers taken: the __int128 does not fit in the one left, so it goes on the stack
// and `last` still takes r9.
NOINLINE long ab_regs_out(long a, long b, long c, long d, long e, __int128 x, int last) {
    return a + b + c + d + e + (long)x + last;
}
NOINLINE _Complex double ab_complex(_Complex double z, _Complex float w) { return z * w; }
NOINLINE long double _Complex ab_complex_ld(long double re, long double im) { return re + im * 1.0il; }
NOINLINE union ab_word ab_union(union ab_word w) { return (union ab_word){.l = w.l + 1}; }
NOINLINE struct ab_nested ab_nested_pass(struct ab_nested n) { n.s.i += 1; n.bits = -n.bits; return n; }

struct ab_account { int id; double balance; char owner[8]; };
NOINLINE double ab_deposit(struct ab_account *a, double amount) {
    if ((uintptr_t)a < 4096) return -1;
    a->balance += amount;
    return a->balance;
}
NOINLINE int ab_bump(int *p) {
    if ((uintptr_t)p < 4096) return -1;
    return ++*p;
}

static void print_i128(__int128 v) {
    char digits[48];
    int n = 0, negative = v < 0;
    unsigned __int128 u = negative ? -(unsigned __int128)v : (unsigned __int128)v;
    do { digits[n++] = '0' + (int)(u % 10); u /= 10; } while (u);
    if (negative) putchar('-');
    while (n) putchar(digits[--n]);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "calls";
    if (strcmp(mode, "deref") == 0) {
        struct ab_account account = {7, 100.5, "ann"};
        int counter = 41;
        printf("ab_deposit %.1f\n", ab_deposit(&account, 20.25));
        printf("ab_deposit %.1f\n", ab_deposit((struct ab_account *)16, 1));
        printf("ab_deposit %.1f\n", ab_deposit(NULL, 1));
        printf("ab_bump %d\n", ab_bump(&counter));
        printf("ab_bump %d\n", ab_bump((int *)8));
        return 0;
    }
    printf("mixed_div 4 2.5 3 = %Lg\n", mixed_div(4, 2.5L, 3));
    printf("ab_ld_scale 0.1 3 = %.21Lg\n", ab_ld_scale(0.1L, 3));
    printf("ab_ld_scale 1e4000 -3 = %Lg\n", ab_ld_scale(1e4000L, -3));
    __int128 big = (__int128)1 << 100;
    printf("ab_i128_mul ");
    print_i128(big + 7);
    printf(" -3 = ");
    print_i128(ab_i128_mul(big + 7, -3));
    printf("\n");
    unsigned __int128 shifted = ab_u128_shift(0xffffffffffffffffULL, 64);
    printf("ab_u128_shift = %llx%016llx\n", (unsigned long long)(shifted >> 64), (unsigned long long)shifted);
    printf("ab_floats = %g\n", ab_floats(1.5f, 0.25));
    printf("ab_string = %ld\n", ab_string("hello", 2));
    struct ab_small s = ab_small_make(-5, 2.5f);
    printf("ab_small_make = {%d, %g}\n", s.i, s.f);
    struct ab_mixed m = ab_mixed_swap((struct ab_mixed){41, 1.25});
    printf("ab_mixed_swap = {%ld, %g}\n", m.n, m.d);
    struct ab_point p = ab_point_mid((struct ab_point){1, 2}, (struct ab_point){3, 5});
    printf("ab_point_mid = {%g, %g}\n", p.x, p.y);
    struct ab_large l = ab_large_make(10, 0.5, "big");
    printf("ab_large_make = {%ld, %ld, %g, %s, {%g, %g}}\n", l.a, l.b, l.d, l.tag, l.p.x, l.p.y);
    printf("ab_large_sum = %ld\n", ab_large_sum(l, 3));
    printf("ab_regs_out = %ld\n", ab_regs_out(1, 2, 3, 4, 5, (__int128)6 << 64 | 9, 7));
    _Complex double z = ab_complex(1.0 + 2.0i, 0.5f + 0.25fi);
    printf("ab_complex = %g%+gi\n", __real__ z, __imag__ z);
    long double _Complex zl = ab_complex_ld(1.5L, -2.0L);
    printf("ab_complex_ld = %Lg%+Lgi\n", __real__ zl, __imag__ zl);
    union ab_word w = ab_union((union ab_word){.l = 99});
    printf("ab_union = %ld\n", w.l);
    struct ab_nested n = ab_nested_pass((struct ab_nested){{3, 0.75f}, {1, -2, 3}, 1, -9});
    printf("ab_nested_pass = {{%d, %g}, {%d, %d, %d}, %u, %d}\n", n.s.i, n.s.f, n.arr[0], n.arr[1], n.arr[2], n.flag, n.bits);
    return 0;
}
