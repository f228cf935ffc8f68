// Loads a library after start-up (dlopen) and calls its function N times, so a tracer must follow the
// dynamic linker to see those calls. Usage: dlopen_host LIBRARY N [ROUNDS]. With ROUNDS, the library
// is loaded, called N times and closed (dlclose) ROUNDS times: usually mapped at the same address each
// time. Prints "plugin calls TOTAL".
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[2]);
    int rounds = argc > 3 ? atoi(argv[3]) : 1;
    long sum = 0;
    for (int r = 0; r < rounds; r++) {
        void *handle = dlopen(argv[1], RTLD_NOW);
        if (handle == NULL) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        long (*work)(long) = (long (*)(long))dlsym(handle, "plugin_work");
        if (work == NULL) return 1;
        for (int i = 0; i < n; i++) sum += work(i);
        if (argc > 3 && dlclose(handle) != 0) return 1;
    }
    printf("plugin calls %d sum %ld\n", n * rounds, sum);
    return sum == (long)rounds * n * (n - 1) / 2 * 5 ? 0 : 1;
}
