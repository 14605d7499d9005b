/*
 * Does a process forked after libclamav's engine was built keep the engine's pages shared?
 *
 *   cc -O2 -o out/bench/forkshare bench/forkshare.c -lclamav
 *   out/bench/forkshare DBDIR[:DBDIR...] LISTFILE [MAXFILES]
 *
 * Loads every DBDIR into one engine and compiles it (as `breakwater run` does), prints the parent's
 * memory, forks; the child scans up to MAXFILES paths from LISTFILE (one a line; all matches, every
 * parser on, the engine's clean-file cache on, as Breakwater scans), then prints its own
 * /proc/self/smaps_rollup figures. The parent waits and prints its figures again. Output: one
 * "key value" line per figure (kB), easy to parse (bench/scale_bench.py does).
 *
 * Private_Dirty in the child is what scanning in a forked process costs beyond the shared engine;
 * Shared_Dirty is the engine (and heap) still shared with the parent.
 */
#include <clamav.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void rollup(const char *who)
{
    static const char *keys[] = {"Rss:", "Pss:", "Shared_Clean:", "Shared_Dirty:", "Private_Clean:",
                                 "Private_Dirty:", "Anonymous:", NULL};
    char line[256];
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) {
        fprintf(stderr, "forkshare: /proc/self/smaps_rollup: %s\n", strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, f)) {
        for (int i = 0; keys[i]; i++) {
            size_t n = strlen(keys[i]);
            if (strncmp(line, keys[i], n) == 0) {
                long kb = strtol(line + n, NULL, 10);
                printf("%s.%.*s %ld\n", who, (int)(n - 1), keys[i], kb);
            }
        }
    }
    fclose(f);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DBDIR[:DBDIR...] LISTFILE [MAXFILES]\n", argv[0]);
        return 2;
    }
    long maxfiles = argc > 3 ? strtol(argv[3], NULL, 10) : -1;
    cl_error_t rc = cl_init(CL_INIT_DEFAULT);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "forkshare: cl_init: %s\n", cl_strerror(rc));
        return 1;
    }
    struct cl_engine *engine = cl_engine_new();
    unsigned int sigs = 0;
    double t0 = now();
    char *dirs = strdup(argv[1]);
    for (char *d = strtok(dirs, ":"); d; d = strtok(NULL, ":")) {
        rc = cl_load(d, engine, &sigs, CL_DB_STDOPT);
        if (rc != CL_SUCCESS) {
            fprintf(stderr, "forkshare: cl_load %s: %s\n", d, cl_strerror(rc));
            return 1;
        }
    }
    double t1 = now();
    rc = cl_engine_compile(engine);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "forkshare: cl_engine_compile: %s\n", cl_strerror(rc));
        return 1;
    }
    printf("signatures %u\nload_s %.2f\ncompile_s %.2f\n", sigs, t1 - t0, now() - t1);
    rollup("parent_loaded");

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        FILE *list = fopen(argv[2], "r");
        if (!list) {
            fprintf(stderr, "forkshare: %s: %s\n", argv[2], strerror(errno));
            _exit(1);
        }
        struct cl_scan_options opts;
        memset(&opts, 0, sizeof opts);
        opts.general = CL_SCAN_GENERAL_ALLMATCHES;
        opts.parse = ~0u;
        char path[4096];
        long scanned = 0, found = 0;
        double s0 = now();
        while ((maxfiles < 0 || scanned < maxfiles) && fgets(path, sizeof path, list)) {
            path[strcspn(path, "\n")] = 0;
            if (!path[0])
                continue;
            const char *name = NULL;
            unsigned long size = 0;
            cl_error_t r = cl_scanfile(path, &name, &size, engine, &opts);
            if (r == CL_VIRUS)
                found++;
            scanned++;
        }
        fclose(list);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("child.scanned %ld\nchild.found %ld\nchild.wall_s %.2f\nchild.cpu_s %.2f\n", scanned, found,
               now() - s0, ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
        rollup("child");
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    rollup("parent_after");
    cl_engine_free(engine);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
