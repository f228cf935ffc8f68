#include "build_info.h"

// Package.swift defines NSTRACE_COMMIT for this file alone, from the environment Scripts/package sets:
// Swift's -D names a condition and never carries a value, C's does. Only this file recompiles when
// the commit changes.
#ifndef NSTRACE_COMMIT
#define NSTRACE_COMMIT ""
#endif

const char *nstrace_build_commit(void) { return NSTRACE_COMMIT; }
