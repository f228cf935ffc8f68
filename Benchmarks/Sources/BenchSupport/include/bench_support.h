#ifndef NSB_BENCH_SUPPORT_H
#define NSB_BENCH_SUPPORT_H

#include <stdint.h>

/// How one command ended, as nstrace-bench measures it.
typedef struct {
    /// 1 when the deadline passed and the command's process group was killed.
    int timed_out;
    /// The wait status (decode with nsb_exit_code).
    int status;
    /// From just before fork to just after the command was reaped.
    int64_t wall_ns;
} nsb_run_result;

/// Runs argv (searched in PATH) in a process group of its own, with `envp` as its environment,
/// stdin from /dev/null and stdout, stderr to the given files. Waits at most `timeout_ms`, then kills
/// the whole group. Returns 0, or an errno when the command could not be started.
int nsb_run(char *const argv[], char *const envp[], const char *stdout_path, const char *stderr_path,
            int64_t timeout_ms, nsb_run_result *result);

/// The exit code, or 128 + signal when killed.
int nsb_exit_code(int status);

#endif
