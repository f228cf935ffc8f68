#ifndef NSTRACE_DEMANGLE_H
#define NSTRACE_DEMANGLE_H

#include <stdbool.h>
#include <stddef.h>

// The demangled form of a C++ (Itanium), Rust (legacy or v0) or Swift symbol, malloc'd (the caller
// frees it); NULL when `symbol` is none of those, longer than `max_length`, or malformed.
// Without `with_parameters`, a C++ name without its parameter list (`shop::check` rather than
// `shop::check(shop::Order const&)`); NULL for Rust and Swift, whose names have no such form.
char *nst_demangle(const char *symbol, size_t max_length, bool with_parameters);

#endif
