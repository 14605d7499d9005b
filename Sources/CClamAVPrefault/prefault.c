// Why this file exists
//
// For every temporary file libclamav scans (each decoded MIME part, each file extracted from an
// archive), its fmap code maps an anonymous private region as large as the file, reads one byte of
// every page ("prefault"), then pread()s the file into the region, and unmaps the region when the
// file is done. The read maps the kernel's shared zero page read-only; the pread then takes a
// copy-on-write fault on every page. Replacing a present page-table entry, and unmapping, need a TLB
// flush on every CPU that runs the process. With one scanning thread that is free; with two threads on
// two CPUs it is an inter-processor interrupt per page and per unmap (in a virtual machine, a VM exit),
// measured at 14 % of `breakwater scan --jobs 2` and a third more CPU per message than one thread
// (docs/benchmarks.md).
//
// So, while the calling thread is inside a scan (bw_prefault_set_limit, set by ClamEngine), a call that
// asks for exactly what fmap asks for (a fresh anonymous private read-write region of at most the
// limit) gets a region whose pages are already there:
// - a region of the same size that an earlier scan unmapped, kept in a small pool and zeroed again
//   (no system call, no fault, no flush), or else
// - a new region made with MAP_POPULATE (the prefault read and the pread find every page present, and
//   no entry is replaced).
// Unmapping a region handed out this way puts it back in the pool while the pool has room (at most
// POOL_REGIONS regions of at most POOL_REGION_MAX bytes, POOL_BYTES in all); otherwise it is unmapped.
// - For a file of more than 8 MB, fmap "ages" its map: once more than 8 MB of it has been read, it
//   maps fresh pages (mmap with MAP_FIXED) over the least used ones to give their memory back, and
//   reads them again when they are needed, page by page: the prefault read maps the zero page and
//   the pread takes a copy-on-write fault, with its flush, on every one (measured: 33 flushes per
//   message of the mixed corpus, nearly all that were left). Inside a region handed out here the
//   memory was taken whole when it was mapped, so there is nothing to give back: such a remap is
//   skipped (the pages keep the file's bytes from the same offsets until the pread writes them
//   again), and the memory stays what the populated map took.
// Everything else, and every call outside a scan, goes to the C library unchanged. Files over the
// limit keep libclamav's lazy paging, so memory stays bounded.
//
// All of this is right only for the page-map code it was measured on (libclamav 1.4's fmap.c): it is
// off until the program turns it on (bw_prefault_enable), which BreakwaterEngine's Prefault gate does
// only for a libclamav in the tested version range whose scan of a file past the aging threshold still
// reads the file's bytes back with it on (a start-up self-test). Off, it passes every call through.
//
// libclamav calls mmap64 and munmap through its PLT; the executable defines both, so the dynamic
// linker binds those calls here.

#define _GNU_SOURCE
#include "clamav_prefault.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define BW_NO_PREFAULT 1
#endif
#endif

static _Thread_local size_t populate_limit;
static atomic_ulong populated;
static atomic_ulong reused;
static atomic_ulong remaps_skipped;
// Off until the program turns it on (BreakwaterEngine's Prefault gate: a libclamav version in the
// tested range and a passed self-test). While off, a scan's limit is taken as 0: every call passes
// through to the C library, and libclamav pages as it always does.
static atomic_int enabled;

void bw_prefault_set_limit(size_t limit) {
    populate_limit = atomic_load_explicit(&enabled, memory_order_acquire) ? limit : 0;
}

unsigned long bw_prefault_count(void) { return atomic_load_explicit(&populated, memory_order_relaxed); }

unsigned long bw_prefault_reused(void) { return atomic_load_explicit(&reused, memory_order_relaxed); }

unsigned long bw_prefault_remaps_skipped(void) {
    return atomic_load_explicit(&remaps_skipped, memory_order_relaxed);
}

#ifdef BW_NO_PREFAULT

int bw_prefault_available(void) { return 0; }

void bw_prefault_release_pool(void) {}

void bw_prefault_enable(int on) { (void)on; }

int bw_prefault_enabled(void) { return 0; }

#else

int bw_prefault_available(void) { return 1; }

enum {
    POOL_REGIONS = 32,
    POOL_REGION_MAX = 256 << 10,
    POOL_BYTES = 1 << 20,
    // Regions handed out and not yet unmapped (only these may go back to the pool, and only within these
    // is an aging remap skipped). When the table is full, a region is still handed out, just never
    // pooled and never spared a remap.
    LIVE_REGIONS = 1024,
};

struct region {
    void *address;
    size_t length;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct region pool[POOL_REGIONS];
static int pool_count;
static size_t pool_bytes;
static struct region live[LIVE_REGIONS];
static int live_count;
static atomic_int live_any; // live_count != 0, read without the lock by every munmap

typedef void *(*mmap_function)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_function)(void *, size_t);
static _Atomic(mmap_function) next_mmap;
static _Atomic(munmap_function) next_munmap;

static void *real_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    mmap_function next = atomic_load_explicit(&next_mmap, memory_order_acquire);
    if (next == NULL) {
        next = (mmap_function)dlsym(RTLD_NEXT, "mmap64");
        atomic_store_explicit(&next_mmap, next, memory_order_release);
    }
    if (next == NULL) // no C library mmap64 to forward to (never seen): make the system call ourselves
        return (void *)syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    return next(addr, length, prot, flags, fd, offset);
}

static int real_munmap(void *addr, size_t length) {
    munmap_function next = atomic_load_explicit(&next_munmap, memory_order_acquire);
    if (next == NULL) {
        next = (munmap_function)dlsym(RTLD_NEXT, "munmap");
        atomic_store_explicit(&next_munmap, next, memory_order_release);
    }
    if (next == NULL)
        return (int)syscall(SYS_munmap, addr, length);
    return next(addr, length);
}

__attribute__((constructor)) static void prefault_resolve(void) {
    (void)real_mmap(NULL, 0, 0, 0, -1, 0); // length 0: EINVAL, resolves the pointer
    (void)real_munmap(NULL, 0);
}

static size_t page_rounded(size_t length) {
    static atomic_size_t page_size;
    size_t page = atomic_load_explicit(&page_size, memory_order_relaxed);
    if (page == 0) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&page_size, page, memory_order_relaxed);
    }
    return (length + page - 1) / page * page;
}

// Callers hold pool_lock.
static void remember_live(void *address, size_t length) {
    if (live_count < LIVE_REGIONS) {
        live[live_count++] = (struct region){address, length};
        atomic_store_explicit(&live_any, 1, memory_order_relaxed);
    }
}

static int take_pooled(size_t length, void **address) {
    for (int i = pool_count - 1; i >= 0; i--) {
        if (pool[i].length == length) {
            *address = pool[i].address;
            pool[i] = pool[--pool_count];
            pool_bytes -= length;
            return 1;
        }
    }
    return 0;
}

void bw_prefault_release_pool(void) {
    struct region taken[POOL_REGIONS];
    pthread_mutex_lock(&pool_lock);
    int n = pool_count;
    memcpy(taken, pool, sizeof(struct region) * (size_t)n);
    pool_count = 0;
    pool_bytes = 0;
    pthread_mutex_unlock(&pool_lock);
    for (int i = 0; i < n; i++) (void)real_munmap(taken[i].address, taken[i].length);
}

void bw_prefault_enable(int on) {
    atomic_store_explicit(&enabled, on ? 1 : 0, memory_order_release);
    if (!on) bw_prefault_release_pool();
}

int bw_prefault_enabled(void) { return atomic_load_explicit(&enabled, memory_order_acquire); }

// True when [addr, addr + length) lies within one region handed out and not unmapped. Callers hold
// pool_lock.
static int within_live(const char *addr, size_t length) {
    for (int i = live_count - 1; i >= 0; i--) {
        const char *start = live[i].address;
        if (addr >= start && length <= live[i].length && (size_t)(addr - start) <= live[i].length - length)
            return 1;
    }
    return 0;
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    size_t limit = populate_limit;
    if (limit != 0 && addr != NULL && fd == -1 && length != 0 && prot == (PROT_READ | PROT_WRITE) &&
        flags == (MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS) && atomic_load_explicit(&live_any, memory_order_relaxed)) {
        // fmap's aging remap (see the top of this file).
        pthread_mutex_lock(&pool_lock);
        int skip = within_live(addr, page_rounded(length));
        pthread_mutex_unlock(&pool_lock);
        if (skip) {
            atomic_fetch_add_explicit(&remaps_skipped, 1, memory_order_relaxed);
            return addr;
        }
    }
    if (limit == 0 || addr != NULL || fd != -1 || length == 0 || length > limit ||
        prot != (PROT_READ | PROT_WRITE) || flags != (MAP_PRIVATE | MAP_ANONYMOUS))
        return real_mmap(addr, length, prot, flags, fd, offset);

    size_t rounded = page_rounded(length);
    int poolable = rounded <= POOL_REGION_MAX;
    void *region = NULL;
    if (poolable) {
        pthread_mutex_lock(&pool_lock);
        int hit = take_pooled(rounded, &region);
        if (hit) remember_live(region, rounded);
        pthread_mutex_unlock(&pool_lock);
        if (hit) {
            memset(region, 0, rounded); // as fresh as a new anonymous map
            atomic_fetch_add_explicit(&reused, 1, memory_order_relaxed);
            return region;
        }
    }
    region = real_mmap(NULL, length, prot, flags | MAP_POPULATE, -1, 0);
    if (region == MAP_FAILED) return region;
    atomic_fetch_add_explicit(&populated, 1, memory_order_relaxed);
    pthread_mutex_lock(&pool_lock);
    remember_live(region, rounded);
    pthread_mutex_unlock(&pool_lock);
    return region;
}

int munmap(void *addr, size_t length) {
    if (!atomic_load_explicit(&live_any, memory_order_relaxed))
        return real_munmap(addr, length);
    size_t asked = page_rounded(length);
    char *a = addr;
    int pooled = 0;
    pthread_mutex_lock(&pool_lock);
    // Every region this unmap touches is no longer handed out. Only a region unmapped whole, by itself,
    // may go back to the pool; any other unmap goes to the kernel as asked.
    for (int i = live_count - 1; i >= 0; i--) {
        struct region r = live[i];
        char *start = r.address, *end = start + r.length;
        if (a + asked <= start || a >= end) continue;
        live[i] = live[--live_count];
        if (a == start && asked == r.length && r.length <= POOL_REGION_MAX && pool_count < POOL_REGIONS &&
            pool_bytes + r.length <= POOL_BYTES) {
            pool[pool_count++] = r;
            pool_bytes += r.length;
            pooled = 1;
        }
    }
    if (live_count == 0) atomic_store_explicit(&live_any, 0, memory_order_relaxed);
    pthread_mutex_unlock(&pool_lock);
    return pooled ? 0 : real_munmap(addr, length);
}

#endif
