// The shared library of the filters fixture: calls back into the program, so that calls of one
// function are made from two modules (`--caller`).
__attribute__((noinline, noipa)) long fl_lib_apply(long (*fn)(long), long n) {
    long sum = 0;
    for (long i = 0; i < n; i++) sum += fn(i);
    return sum;
}
