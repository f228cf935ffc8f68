#ifndef NSTRACE_BUILD_INFO_H
#define NSTRACE_BUILD_INFO_H

// The git commit nstrace was built from, or "" when the build was not told (a plain `swift build`
// from a fresh clone, a source tarball, a machine without git).
const char *nstrace_build_commit(void);

#endif
