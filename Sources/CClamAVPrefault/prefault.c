// Why this file exists
//
// For every temporary file libclamav scans (each decoded MIME part, each file extracted from an
// archive), its fmap code maps an anonymous private region as large as the file, reads one byte of
// every page ("prefault"), then pread()s the file into the region. The read maps the kernel's shared
// zero page read-only; the pread then takes a copy-on-write fault on every page, and replacing a
// present page-table entry needs a TLB flush on every CPU that runs the process. With one scanning
// thread that is free; with two threads on two CPUs it is an inter-processor interrupt per page (in a
// virtual machine, a VM exit), measured at 14 % of `breakwater scan --jobs 2` and a third more CPU per
// message than one thread (docs/benchmarks.md).
//
// Creating those regions already populated (MAP_POPULATE) gives the pages up front: the prefault
// read and the pread find them present and no entry is ever replaced. libclamav calls mmap64 through
// its PLT; the executable defines mmap64, so the dynamic linker binds libclamav's calls here, and this
// forwards every call to the C library's mmap64 unchanged except while the calling thread is inside a
// scan (bw_prefault_set_limit, set by ClamEngine) and the call asks for exactly what fmap asks for: a
// fresh anonymous private read-write region of at most the limit (larger files keep libclamav's lazy
// paging, so memory stays bounded).

#define _GNU_SOURCE
#include "clamav_prefault.h"

#include <dlfcn.h>
#include <stdatomic.h>
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

void bw_prefault_set_limit(size_t limit) { populate_limit = limit; }

unsigned long bw_prefault_count(void) { return atomic_load_explicit(&populated, memory_order_relaxed); }

#ifdef BW_NO_PREFAULT

int bw_prefault_available(void) { return 0; }

#else

int bw_prefault_available(void) { return 1; }

typedef void *(*mmap_function)(void *, size_t, int, int, int, off_t);
static _Atomic(mmap_function) next_mmap;

static mmap_function resolve_next(void) {
    mmap_function next = atomic_load_explicit(&next_mmap, memory_order_acquire);
    if (next == NULL) {
        next = (mmap_function)dlsym(RTLD_NEXT, "mmap64");
        atomic_store_explicit(&next_mmap, next, memory_order_release);
    }
    return next;
}

__attribute__((constructor)) static void prefault_resolve(void) { (void)resolve_next(); }

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    size_t limit = populate_limit;
    if (limit != 0 && addr == NULL && fd == -1 && length <= limit &&
        prot == (PROT_READ | PROT_WRITE) && flags == (MAP_PRIVATE | MAP_ANONYMOUS)) {
        flags |= MAP_POPULATE;
        atomic_fetch_add_explicit(&populated, 1, memory_order_relaxed);
    }
    mmap_function next = resolve_next();
    if (next == NULL) // no C library mmap64 to forward to (never seen): make the system call ourselves
        return (void *)syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    return next(addr, length, prot, flags, fd, offset);
}

#endif
