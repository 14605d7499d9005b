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

int bw_thread_enter_directory(int dirfd) {
    if (!owns_fs_context) {
        if (unshare(CLONE_FS) != 0) return errno;
        owns_fs_context = 1;
    }
    return fchdir(dirfd) == 0 ? 0 : errno;
}

#include <sys/vfs.h>

int bw_fs_info(int fd, long *type, unsigned long long *available) {
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return errno;
    *type = (long)fs.f_type;
    *available = (unsigned long long)fs.f_bavail * (unsigned long long)fs.f_bsize;
    return 0;
}
