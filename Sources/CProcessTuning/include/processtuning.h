// glibc tuning that Swift's Glibc module does not export (<malloc.h>; the GNU pthread extensions):
// the daemon's malloc arena cap (MallocArenas in BreakwaterCore) and libmilter's thread stacks.
#ifndef BREAKWATER_CPROCESSTUNING_H
#define BREAKWATER_CPROCESSTUNING_H

#include <malloc.h>
#include <stddef.h>

/// mallopt(M_ARENA_MAX, n): 1 on success.
static inline int bw_malloc_set_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

/// malloc_trim(0): hands free heap memory back to the kernel (after a blocking reload freed an engine).
static inline int bw_malloc_trim(void) { return malloc_trim(0); }

/// pthread_setattr_default_np with this stack size: threads created from now on with no attributes of
/// their own (libmilter's) get it. 0 on success, else an errno value.
int bw_set_default_thread_stack_size(size_t bytes);

/// The stack size such threads get now (pthread_getattr_default_np); 0 if it cannot be read.
size_t bw_default_thread_stack_size(void);

/// The stack size of the calling thread (pthread_getattr_np); 0 if it cannot be read.
size_t bw_current_thread_stack_size(void);

#endif
