// Functions whose names, types and sizes the Symbols tests compare with nm, gdb and the psABI.
// With an argument "wait", prints "ready" and waits to be killed, so a test can inspect it live.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct point { int x, y; };
struct big { long a[5]; };
struct mixed { double d; long l; };

__attribute__((noinline)) int fx_add(int a, int b) { return a + b; }
__attribute__((noinline)) double fx_scale(double value, float factor, const char *label) {
    return value * factor + (label ? (double)strlen(label) : 0);
}
__attribute__((noinline)) long fx_many(long a, long b, long c, long d, long e, long f, long g, long h) {
    return a + b + c + d + e + f + g + h;
}
__attribute__((noinline)) struct point fx_points(struct point p, struct big b, struct mixed m) {
    p.x += (int)b.a[0] + (int)m.d;
    return p;
}
__attribute__((noinline)) struct big fx_big(unsigned char seed) {
    struct big b = {{seed}};
    return b;
}
__attribute__((noinline)) void fx_void(void) { asm volatile(""); }

int main(int argc, char **argv) {
    struct point p = {1, 2};
    struct big b = {{1}};
    struct mixed m = {1.0, 2};
    long sum = fx_add(1, 2) + (long)fx_scale(1.0, 2.0f, "x") + fx_many(1, 2, 3, 4, 5, 6, 7, 8)
             + fx_points(p, b, m).x + fx_big(3).a[0];
    fx_void();
    char *heap = malloc(16);
    snprintf(heap, 16, "%ld", sum);
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        printf("ready %s\n", heap);
        fflush(stdout);
        for (;;) pause();
    }
    printf("%s\n", heap);
    free(heap);
    return 0;
}
