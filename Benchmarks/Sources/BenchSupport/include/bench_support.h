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

/// A command started by nsb_spawn and not yet waited for.
typedef struct {
    int pid;
    /// From pidfd_open, or -1 (then nsb_wait cannot time out).
    int pidfd;
    int64_t start_ns;
} nsb_child;

/// Starts argv as nsb_run does (own process group, stdin from /dev/null, stdout and stderr to the
/// files) and returns once it is running the command. Returns 0, or an errno when it could not be
/// started.
int nsb_spawn(char *const argv[], char *const envp[], const char *stdout_path, const char *stderr_path,
              nsb_child *child);

/// Waits at most `timeout_ms` for a spawned command to end. Returns 0 when it ended (reaped, what is
/// left of its process group killed, `result` filled), 1 when it is still running.
int nsb_wait(nsb_child *child, int64_t timeout_ms, nsb_run_result *result);

/// Sends `sig` to the command alone, or to its whole process group. 0 or an errno.
int nsb_signal(nsb_child *child, int sig);
int nsb_kill_group(nsb_child *child, int sig);

/// The exit code, or 128 + signal when killed.
int nsb_exit_code(int status);

#endif
