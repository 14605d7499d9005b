// Running a scan on its scan slot's own stack: ScanStacks (Sources/BreakwaterMilter) says why.
#define _GNU_SOURCE
#include "cstack.h"

#include <errno.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define BW_NO_SWITCH 1
#endif
#endif

void *bw_stack_create(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size == 0 || size % page != 0) {
        errno = EINVAL;
        return NULL;
    }
    char *base = mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                      -1, 0);
    if (base == MAP_FAILED) return NULL;
    // The lowest page is the guard: a stack overflow faults instead of writing over other memory.
    if (mprotect(base, page, PROT_NONE) != 0) {
        int e = errno;
        munmap(base, size + page);
        errno = e;
        return NULL;
    }
    return base + page;
}

void bw_stack_destroy(void *stack, size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (stack) munmap((char *)stack - page, size + page);
}

int bw_stack_switches(void) {
#ifdef BW_NO_SWITCH
    return 0;
#else
    return 1;
#endif
}

#ifndef BW_NO_SWITCH
struct call {
    void (*fn)(void *);
    void *arg;
};

static __thread struct call *current;

static void trampoline(void) {
    struct call *c = current;
    c->fn(c->arg);
    // Returning resumes uc_link: the caller, inside swapcontext.
}
#endif

int bw_stack_run(void *stack, size_t size, void (*fn)(void *), void *arg) {
#ifdef BW_NO_SWITCH
    (void)stack;
    (void)size;
    fn(arg);
    return 0;
#else
    ucontext_t caller, callee;
    struct call c = {fn, arg};
    if (getcontext(&callee) != 0) return -1;
    callee.uc_stack.ss_sp = stack;
    callee.uc_stack.ss_size = size;
    callee.uc_link = &caller;
    current = &c;
    makecontext(&callee, trampoline, 0);
    return swapcontext(&caller, &callee) == 0 ? 0 : -1;
#endif
}
