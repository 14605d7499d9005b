// Running a function on a stack of our own (see ScanStacks in BreakwaterMilter).
#ifndef BREAKWATER_CSTACK_H
#define BREAKWATER_CSTACK_H

#include <stddef.h>

/// Maps a stack of `size` bytes (a multiple of the page size) below a guard page; NULL on failure
/// (errno set). Its pages are only resident once a call has used them.
void *bw_stack_create(size_t size);

/// Unmaps a stack made by bw_stack_create.
void bw_stack_destroy(void *stack, size_t size);

/// Calls fn(arg) on `stack` and returns when it returns: 0, or -1 (errno set) when the switch
/// failed and fn was not called. Under a sanitizer (which must be told of every stack switch) fn
/// runs on the caller's stack.
int bw_stack_run(void *stack, size_t size, void (*fn)(void *), void *arg);

/// 1 when bw_stack_run really switches stacks (not under a sanitizer).
int bw_stack_switches(void);

#endif
