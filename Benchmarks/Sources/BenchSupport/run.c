// Running one contender: fork and exec in a process group of its own (so a tracer and its tracee die
// together on a timeout), waited for through a pidfd, which needs no SIGCHLD handler and no polling
// loop that would steal CPU time from what is being measured on a 2-vCPU machine.
#define _GNU_SOURCE
#include "bench_support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int nsb_exit_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

int nsb_spawn(char *const argv[], char *const envp[], const char *stdout_path, const char *stderr_path,
              nsb_child *child) {
    child->pid = -1;
    child->pidfd = -1;
    child->start_ns = 0;
    int err_pipe[2];
    if (pipe2(err_pipe, O_CLOEXEC) != 0) return errno;

    int64_t start = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(err_pipe[0]);
        close(err_pipe[1]);
        return e;
    }
    if (pid == 0) {
        // The child: async-signal-safe calls only (the parent has threads).
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int in = open("/dev/null", O_RDONLY);
        int out = open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
            int e = errno;
            (void)!write(err_pipe[1], &e, sizeof e);
            _exit(127);
        }
        execvpe(argv[0], argv, envp);
        int e = errno;
        (void)!write(err_pipe[1], &e, sizeof e);
        _exit(127);
    }
    setpgid(pid, pid);  // also here: whichever runs first, the group exists before any kill
    close(err_pipe[1]);

    // The pipe closes at exec (O_CLOEXEC) or carries exec's errno: either way this read returns
    // once the child is running the command or has failed to.
    int exec_errno = 0;
    ssize_t n;
    while ((n = read(err_pipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {}
    close(err_pipe[0]);
    if (n == sizeof exec_errno && exec_errno != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return exec_errno;
    }
    child->pid = pid;
    child->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    child->start_ns = start;
    return 0;
}

int nsb_wait(nsb_child *child, int64_t timeout_ms, nsb_run_result *result) {
    result->timed_out = 0;
    result->status = 0;
    result->wall_ns = 0;
    if (child->pid <= 0) return 0;
    int64_t deadline = now_ns() + timeout_ms * 1000000;
    if (child->pidfd >= 0) {
        for (;;) {
            // Poll at least once, with no wait when the time is up: a timeout of 0 asks "has it
            // ended?".
            int64_t left = (deadline - now_ns()) / 1000000;
            if (left < 0) left = 0;
            struct pollfd p = {.fd = child->pidfd, .events = POLLIN};
            int n = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
            if (n > 0) break;
            if (n < 0 && errno != EINTR) break;
            if (n == 0 && left == 0) { result->timed_out = 1; break; }
        }
    }
    if (result->timed_out) return 1;
    int status = 0;
    while (waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {}
    result->wall_ns = now_ns() - child->start_ns;
    result->status = status;
    // Whatever the command left behind in its group (a tracee whose tracer died) goes too.
    kill(-child->pid, SIGKILL);
    if (child->pidfd >= 0) close(child->pidfd);
    child->pidfd = -1;
    child->pid = -1;
    return 0;
}

int nsb_kill_group(nsb_child *child, int sig) {
    if (child->pid <= 0) return 0;
    return kill(-child->pid, sig) == 0 ? 0 : errno;
}

int nsb_signal(nsb_child *child, int sig) {
    if (child->pid <= 0) return 0;
    return kill(child->pid, sig) == 0 ? 0 : errno;
}

int nsb_run(char *const argv[], char *const envp[], const char *stdout_path, const char *stderr_path,
            int64_t timeout_ms, nsb_run_result *result) {
    result->timed_out = 0;
    result->status = 0;
    result->wall_ns = 0;
    nsb_child child;
    int rc = nsb_spawn(argv, envp, stdout_path, stderr_path, &child);
    if (rc != 0) return rc;
    if (nsb_wait(&child, timeout_ms, result) != 0) {
        kill(-child.pid, SIGKILL);
        nsb_wait(&child, 60000, result);
        result->timed_out = 1;
    }
    return 0;
}
