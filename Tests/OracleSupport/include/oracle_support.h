#ifndef ORACLE_SUPPORT_H
#define ORACLE_SUPPORT_H

// What the execution oracle needs that Swift cannot say: fork with PTRACE_TRACEME, CPU affinity
// masks (macros), CPUID.

#include <stdint.h>
#include <sys/types.h>
#include "oracle_layout.h"

// Forks a child that pins itself to `cpu` (when >= 0), asks to be traced and execs `path`: the parent
// sees it stop with SIGTRAP at the exec. Returns the pid, or -1 with errno set when fork fails; a
// child whose exec fails exits with 127.
pid_t oracle_spawn_traced(const char *path, char *const argv[], int cpu);

// The CPU the calling thread runs on now.
int oracle_current_cpu(void);

// Pins the calling thread to one CPU, saving its previous mask in `saved` (an opaque buffer of
// ORACLE_AFFINITY_SIZE bytes) for oracle_restore_affinity.
#define ORACLE_AFFINITY_SIZE 128
int oracle_pin_calling_thread(int cpu, void *saved);
int oracle_restore_affinity(const void *saved);

// Where XSAVE component `index` sits in the standard (non-compacted) layout PTRACE_GETREGSET
// NT_X86_XSTATE uses, and its size; 0 when the CPU does not have it.
int oracle_xstate_component(unsigned index, uint32_t *offset, uint32_t *size);

// The state components enabled in XCR0.
uint64_t oracle_xcr0(void);

// Calls machine code at `fn` as a function of two integers (the inline pads' in-process tests).
uint64_t oracle_call2(const void *fn, uint64_t a, uint64_t b);

// Runs `fn(i, i)` `calls` times on each of `threads` threads at once; returns how many results were
// not 2i (the function under test adds its arguments).
long oracle_call2_threads(const void *fn, int threads, long calls);

// The offset of the calling thread's tid in its glibc TCB (fs:[offset]), found by searching it; -1
// if it is not there.
long oracle_tcb_tid_offset(void);

// Continues a child stopped under ptrace (suppressing the signal it stopped with) until it is about to
// execute the instruction at `address` (hardware breakpoint 0; none when `address` is 0) or a signal
// stops it, and waits for that stop (EINTR retried); the breakpoint is cleared again. Returns 0 with
// the stop's signal, siginfo code and address in *stop_signal, *code and *address (the breakpoint:
// SIGTRAP, TRAP_HWBKPT); 1 if the child exited or was killed instead (it is reaped then); -1 with
// errno set if ptrace or waitpid failed.
int oracle_continue_to(pid_t pid, uint64_t address, int *stop_signal, int *code, uint64_t *address_out);

#endif
