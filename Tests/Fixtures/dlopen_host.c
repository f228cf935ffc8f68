// Loads a library after start-up (dlopen) and calls its function N times, so a tracer must follow the
// dynamic linker to see those calls. Usage: dlopen_host LIBRARY N. Prints "plugin calls N".
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[2]);
    void *handle = dlopen(argv[1], RTLD_NOW);
    if (handle == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    long (*work)(long) = (long (*)(long))dlsym(handle, "plugin_work");
    if (work == NULL) return 1;
    long sum = 0;
    for (int i = 0; i < n; i++) sum += work(i);
    printf("plugin calls %d sum %ld\n", n, sum);
    return sum == (long)n * (n - 1) / 2 * 5 ? 0 : 1;
}
