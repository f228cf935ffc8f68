// A single-threaded, deterministic program for checking what nstrace prints: nested calls, strings
// that need escaping, doubles, a returned string. Usage: calls [ROUNDS [exec]]. Prints its own call
// counts; with `exec`, then runs itself again from inside fx_exec, which never returns.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline, noipa)) int fx_inner(int x) { return x * 2; }

__attribute__((noinline, noipa)) int fx_outer(int n, const char *tag) {
    int sum = tag[0] == 'h';
    for (int i = 0; i < n; i++) sum += fx_inner(i);
    return sum;
}

__attribute__((noinline, noipa)) double fx_ratio(double a, double b) { return a / b; }

__attribute__((noinline, noipa)) const char *fx_echo(const char *s) { return s; }

__attribute__((noinline, noipa)) int fx_exec(const char *self, const char *rounds) {
    fflush(stdout);
    execl(self, self, rounds, (char *)NULL);
    return -1;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    long check = 0;
    for (int r = 0; r < rounds; r++) {
        check += fx_outer(3, "hello\n\"world\"");
        check += (long)(fx_ratio(1.0, 4.0) * 4);
        check += fx_echo("abc")[0];
    }
    printf("calls fx_outer %d\n", rounds);
    printf("calls fx_inner %d\n", rounds * 3);
    printf("calls fx_ratio %d\n", rounds);
    printf("calls fx_echo %d\n", rounds);
    if (argc > 2 && strcmp(argv[2], "exec") == 0) fx_exec(argv[0], argv[1]);
    return check == (long)rounds * (7 + 1 + 'a') ? 0 : 1;
}
