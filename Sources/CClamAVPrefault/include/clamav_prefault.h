// Pre-faulting of libclamav's per-file page maps: see prefault.c for why.
#ifndef BREAKWATER_CLAMAV_PREFAULT_H
#define BREAKWATER_CLAMAV_PREFAULT_H

#include <stddef.h>

/// From now on, on the calling thread, anonymous private read-write maps of at most `limit` bytes are
/// handed out with their pages present: reused from a small pool of such maps unmapped earlier, or
/// created populated (MAP_POPULATE). 0 turns it off. Set around a libclamav scan call.
void bw_prefault_set_limit(size_t limit);

/// How many maps were created populated in this process (tests and diagnostics).
unsigned long bw_prefault_count(void);

/// How many maps were handed out again from the pool of unmapped ones (tests and diagnostics).
unsigned long bw_prefault_reused(void);

/// How many of libclamav's fmap "aging" remaps (MAP_FIXED over part of a map) were skipped because they
/// fell inside a populated map (tests and diagnostics).
unsigned long bw_prefault_remaps_skipped(void);

/// Unmaps every map kept in the pool (the pool holds at most 1 MiB).
void bw_prefault_release_pool(void);

/// 1 when the wrapper is compiled in (not under ThreadSanitizer, which intercepts mmap itself).
int bw_prefault_available(void);

/// Turns the wrapper on (1) or off (0) for the whole process; off by default. While off,
/// bw_prefault_set_limit sets 0 and every mmap64/munmap passes through. Turning it off empties the pool.
void bw_prefault_enable(int on);

/// 1 while the wrapper is on.
int bw_prefault_enabled(void);

/// The scan context of the scan running on the calling thread (NULL: none), for libclamav's message
/// callback (ClamEngine).
void bw_scan_context_set(void *context);
void *bw_scan_context_get(void);

#endif
