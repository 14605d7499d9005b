// glibc's malloc tuning (<malloc.h> is not in Swift's Glibc module): see MallocArenas in BreakwaterCore.
#ifndef BREAKWATER_CMALLOC_H
#define BREAKWATER_CMALLOC_H

#include <malloc.h>

/// mallopt(M_ARENA_MAX, n): 1 on success.
static inline int bw_malloc_set_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

#endif
