// The GNU pthread extensions need _GNU_SOURCE before the first include, so they live here, not in
// the header (a module header may see <pthread.h> already included without it).
#define _GNU_SOURCE
#include <pthread.h>
#include "processtuning.h"

int bw_set_default_thread_stack_size(size_t bytes) {
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0) return rc;
    rc = pthread_attr_setstacksize(&attr, bytes);
    if (rc == 0) rc = pthread_setattr_default_np(&attr);
    pthread_attr_destroy(&attr);
    return rc;
}

// The stack size in attributes a pthread_get*attr* call filled in (rc: its result), destroying them;
// 0 when the call failed.
static size_t stack_size_of(int rc, pthread_attr_t *attr) {
    size_t size = 0;
    if (rc != 0) return 0;
    if (pthread_attr_getstacksize(attr, &size) != 0) size = 0;
    pthread_attr_destroy(attr);
    return size;
}

size_t bw_default_thread_stack_size(void) {
    pthread_attr_t attr;
    return stack_size_of(pthread_getattr_default_np(&attr), &attr);
}

size_t bw_current_thread_stack_size(void) {
    pthread_attr_t attr;
    return stack_size_of(pthread_getattr_np(pthread_self(), &attr), &attr);
}
