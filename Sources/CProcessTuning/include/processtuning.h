// glibc tuning that Swift's Glibc module does not export (<malloc.h>; the GNU pthread extensions):
// the daemon's malloc arena cap (MallocArenas in BreakwaterCore) and libmilter's thread stacks.
#ifndef BREAKWATER_CPROCESSTUNING_H
#define BREAKWATER_CPROCESSTUNING_H

#include <malloc.h>
#include <stddef.h>

#include "crashguard.h"
#include "workers.h"

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

/// Gives the calling thread a working directory of its own (unshare(CLONE_FS), once per thread) and
/// moves it to `dirfd` (no call when it is there already: the descriptor is remembered, so it must stay
/// open on that directory): the other threads keep theirs. 0 on success, else an errno value.
int bw_thread_enter_directory(int dirfd);

/// Whether a thread can take a working directory of its own and enter `dirfd` while the process's
/// own stays where it is (unshare(CLONE_FS) may be refused by a seccomp filter). Checked in a child
/// process, on a thread of the child's: the calling process starts no thread (glibc takes every
/// FILE's lock in getc once a process has had a second thread, which slows libclamav's database
/// load by a third). 1 when it can, 0 when not.
int bw_scan_directory_self_test(int dirfd);

/// fstatfs: the file system's type (f_type, e.g. 0x01021994 for a tmpfs) and the bytes available to
/// an unprivileged user. 0 on success, else an errno value.
int bw_fs_info(int fd, long *type, unsigned long long *available);

#endif
