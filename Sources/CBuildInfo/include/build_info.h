#ifndef NSTRACE_BUILD_INFO_H
#define NSTRACE_BUILD_INFO_H

// The git commit nstrace was built from. Scripts/package passes it as -Xcc -DNSTRACE_COMMIT='"…"'
// because Swift's -D defines a condition, never a value; a plain `swift build` (a fresh clone, a
// source tarball, no git at all) leaves it empty and `--version` says the commit is unknown.
#ifndef NSTRACE_COMMIT
#define NSTRACE_COMMIT ""
#endif

static inline const char *nstrace_build_commit(void) { return NSTRACE_COMMIT; }

#endif
