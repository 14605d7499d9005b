/* A test device standing in for a libclamav parser bug: preloaded (LD_PRELOAD) into `breakwater run`,
 * it wraps libclamav's scan entry points and crashes the process (a write to address 16: SIGSEGV on
 * the scanning thread) when the data scanned holds the marker CRASHLIB_MARKER. Nothing in the product knows of it.
 *
 * Environment:
 *   CRASHLIB_LOG       file to which each crash appends "pid ID\n" (ID: up to 32 characters of
 *                      [A-Za-z0-9_-] after "BREAKWATER-CRASH-MARKER:") before it raises the signal
 *   CRASHLIB_DELAY_MS  sleep this long in every scan (keeps several scans in flight at once)
 *
 * Build: cc -shared -fPIC -o crashlib.so crashlib.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MARKER "BREAKWATER-CRASH-MARKER:"

typedef struct cl_fmap cl_fmap_t;
typedef int cl_error_t;

/* The last buffer cl_fmap_open_memory mapped on this thread (the milter maps and scans on one thread). */
static __thread const void *last_base;
static __thread size_t last_len;
static __thread cl_fmap_t *last_map;

static void pause_if_asked(void) {
    const char *d = getenv("CRASHLIB_DELAY_MS");
    if (d && *d) {
        long ms = atol(d);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void crash_if_marked(const void *data, size_t len) {
    const char *hit = memmem(data, len, MARKER, sizeof(MARKER) - 1);
    if (!hit) return;
    const char *id = hit + sizeof(MARKER) - 1;
    size_t avail = len - (size_t)(id - (const char *)data), n = 0;
    while (n < avail && n < 32) {
        char c = id[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            break;
        n++;
    }
    const char *log = getenv("CRASHLIB_LOG");
    if (log && *log) {
        char line[64];
        int k = snprintf(line, sizeof(line), "%d %.*s\n", (int)getpid(), (int)n, id);
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            if (write(fd, line, (size_t)k) < 0) {}
            close(fd);
        }
    }
    /* A real invalid write, as a parser bug makes: a fault the process cannot return from. */
    *(volatile char *)(uintptr_t)16 = 1;
}

cl_fmap_t *cl_fmap_open_memory(const void *start, size_t len) {
    static cl_fmap_t *(*real)(const void *, size_t);
    if (!real) real = (cl_fmap_t * (*)(const void *, size_t)) dlsym(RTLD_NEXT, "cl_fmap_open_memory");
    cl_fmap_t *m = real(start, len);
    last_base = start;
    last_len = len;
    last_map = m;
    return m;
}

cl_error_t cl_scanmap_callback(cl_fmap_t *map, const char *filename, const char **virname, unsigned long *scanned,
                               const void *engine, void *scanoptions, void *context) {
    static cl_error_t (*real)(cl_fmap_t *, const char *, const char **, unsigned long *, const void *, void *,
                              void *);
    if (!real) real = dlsym(RTLD_NEXT, "cl_scanmap_callback");
    pause_if_asked();
    if (map == last_map && last_base) crash_if_marked(last_base, last_len);
    return real(map, filename, virname, scanned, engine, scanoptions, context);
}

cl_error_t cl_scandesc_callback(int desc, const char *filename, const char **virname, unsigned long *scanned,
                                const void *engine, void *scanoptions, void *context) {
    static cl_error_t (*real)(int, const char *, const char **, unsigned long *, const void *, void *, void *);
    if (!real) real = dlsym(RTLD_NEXT, "cl_scandesc_callback");
    pause_if_asked();
    struct stat st;
    if (fstat(desc, &st) == 0 && st.st_size > 0) {
        size_t len = (size_t)st.st_size;
        char *buf = malloc(len);
        if (buf) {
            ssize_t got = pread(desc, buf, len, 0);
            if (got > 0) crash_if_marked(buf, (size_t)got);
            free(buf);
        }
    }
    return real(desc, filename, virname, scanned, engine, scanoptions, context);
}
