#include "nstrace_demangle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <libiberty/demangle.h>

// The Swift runtime's demangler, exported by libswiftCore (which every nstrace binary links, static or
// shared); its header is not installed. Returns a malloc'd string when given no buffer.
extern char *swift_demangle(const char *mangled, size_t length, char *buffer, size_t *buffer_size,
                            uint32_t flags);

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

// Rust's legacy mangling is Itanium's with a last path element `17h` + 16 hex digits + `E` (a suffix
// such as `.llvm.123` may follow). Looking for it first spares most C++ names a Rust parse, a tenth
// of the time demangling libLLVM's names takes.
static bool has_rust_hash(const char *s) {
    for (const char *h = strstr(s, "17h"); h; h = strstr(h + 1, "17h")) {
        int digits = 0;
        while (digits < 16 && strchr("0123456789abcdef", h[3 + digits]) && h[3 + digits]) digits++;
        if (digits == 16 && h[19] == 'E') return true;
    }
    return false;
}

// Swift 5+ (`$s`), 4.x (`$S`), embedded (`$e`) and before (`_T0`), with or without the leading
// underscore ELF symbols carry.
static bool is_swift(const char *s) {
    if (*s == '_') s++;
    return starts_with(s, "$s") || starts_with(s, "$S") || starts_with(s, "$e") || starts_with(s, "T0");
}

char *nst_demangle(const char *symbol, size_t max_length, bool with_parameters) {
    // libiberty bounds its recursion (DMGL_NO_RECURSE_LIMIT is not passed), and the length bound keeps
    // a hostile symbol table from costing more than a name's worth of time each.
    size_t length = strnlen(symbol, max_length + 1);
    if (length > max_length) return NULL;
    if (starts_with(symbol, "_R")) return with_parameters ? cplus_demangle(symbol, DMGL_ANSI | DMGL_RUST) : NULL;
    if (starts_with(symbol, "_Z")) {
        // A legacy Rust symbol is a valid Itanium one ending in a hash: Rust's demangler, asked first,
        // takes only those and drops the hash, as rustc's own tools print them.
        char *rust = has_rust_hash(symbol) ? cplus_demangle(symbol, DMGL_ANSI | DMGL_RUST) : NULL;
        if (rust && with_parameters) return rust;
        if (rust) {
            free(rust);
            return NULL;
        }
        return cplus_demangle(symbol, DMGL_ANSI | (with_parameters ? DMGL_PARAMS : 0) | DMGL_GNU_V3);
    }
    if (is_swift(symbol)) return with_parameters ? swift_demangle(symbol, length, NULL, NULL, 0) : NULL;
    return NULL;
}
