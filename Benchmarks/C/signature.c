// A function with a DWARF signature like a real handler's, for the event-formatting micro-benchmark
// (nstrace-bench reads its parameters with the Symbols module, as nstrace does).
#include <stddef.h>

struct order;

__attribute__((noinline)) double nsb_handle(int worker, const char *line, struct order *out, size_t length,
                                            double discount) {
    (void)out;
    return worker + (double)length * discount + (line ? line[0] : 0);
}
