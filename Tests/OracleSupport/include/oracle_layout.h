#ifndef ORACLE_LAYOUT_H
#define ORACLE_LAYOUT_H

// What the execution oracle's child (Tests/Fixtures/relocator_cases.c) maps before it stops itself,
// published in its global `relocator_layout` for the oracle (Tests/RelocatorTests) to read. One
// definition, included by both sides.

#include <stdint.h>

#define ORACLE_LAYOUT_MAGIC 0x74756f79616c726fULL /* "orlayout" */
#define ORACLE_MAX_MODULES 128  // every C fixture at -O0 and -O2, libc, the dynamic linker…

// Low, so that `[reg + reg*8 + disp]` with every register pointing into the buffer still lands inside
// it: an instruction with a scaled index then really executes instead of faulting.
#define ORACLE_DATA_BASE 0x10000ULL
#define ORACLE_DATA_SIZE (8ULL << 20)
#define ORACLE_STACK_SIZE (64ULL << 10)
// 8 GiB: more than 4 GiB from every module of a PIE process (0x55…, 0x7f…), so nothing RIP-relative
// reaches from there.
#define ORACLE_FAR_BASE 0x200000000ULL

// One loaded object and the code page mapped for it within ±2 GiB of all of it.
struct oracle_module_pages {
    uint64_t start, end, near;
};

struct oracle_layout {
    uint64_t magic;
    uint64_t data, data_size;
    uint64_t stack, stack_size;
    uint64_t far;
    uint64_t module_count;
    struct oracle_module_pages modules[ORACLE_MAX_MODULES];
};

#endif
