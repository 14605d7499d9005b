// The scanner threads' own working directory (BreakwaterMilter's ScanDirectory): libclamav writes a
// scan's temporary files under the engine's temporary directory, one path for every scan. The
// daemon's engines get the relative path ".", and each scanner thread, which owns its working
// directory (unshare(CLONE_FS): the process's other threads keep theirs), points it at the
// directory of the scan it runs: the one in memory, or the configured one on disk.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <unistd.h>

#include "processtuning.h"

static __thread int owns_fs_context;
/* The descriptor this thread last entered (-1: none): entered again, nothing to do (one fchdir a scan
 * fewer). Only this function moves the thread's working directory once it owns it. */
static __thread int entered = -1;

int bw_thread_enter_directory(int dirfd) {
    if (!owns_fs_context) {
        if (unshare(CLONE_FS) != 0) return errno;
        owns_fs_context = 1;
    }
    if (dirfd == entered) return 0;
    if (fchdir(dirfd) != 0) {
        entered = -1;
        return errno;
    }
    entered = dirfd;
    return 0;
}

#include <sys/vfs.h>

int bw_fs_info(int fd, long *type, unsigned long long *available) {
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return errno;
    *type = (long)fs.f_type;
    *available = (unsigned long long)fs.f_bavail * (unsigned long long)fs.f_bsize;
    return 0;
}

#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

struct self_test {
    int dirfd;
    int ok;
};

static void *self_test_thread(void *arg) {
    struct self_test *t = arg;
    struct stat here, there;
    if (bw_thread_enter_directory(t->dirfd) != 0) return NULL;
    if (stat(".", &here) != 0 || fstat(t->dirfd, &there) != 0) return NULL;
    t->ok = here.st_ino == there.st_ino && here.st_dev == there.st_dev;
    return NULL;
}

int bw_scan_directory_self_test(int dirfd) {
    pid_t child = fork();
    if (child < 0) return 0;
    if (child == 0) {
        struct self_test t = {dirfd, 0};
        pthread_attr_t attr;
        pthread_t thread;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 << 10);
        if (pthread_create(&thread, &attr, self_test_thread, &t) != 0) _exit(1);
        pthread_join(thread, NULL);
        // The process's own working directory must not have moved.
        struct stat cwd, dir;
        if (!t.ok || stat(".", &cwd) != 0 || fstat(dirfd, &dir) != 0) _exit(1);
        _exit(cwd.st_ino == dir.st_ino && cwd.st_dev == dir.st_dev ? 1 : 0);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return 0;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
