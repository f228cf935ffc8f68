// A shared library loaded by dlopen_host after start-up.
__attribute__((noinline)) long plugin_work(long x) { return 5 * x; }
