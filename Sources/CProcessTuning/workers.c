#define _GNU_SOURCE
#include "workers.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

pid_t bw_fork_child(const char *name, int nocore) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_NAME, name, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(0);
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        signal(s, SIG_DFL);
    }
    /* systemd stops the whole unit with SIGTERM (KillMode=control-group): the children end with the
     * daemon (the socket closes, or PR_SET_PDEATHSIG), after it has drained, never before. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* libclamav names each scan's temporary directory and files from rand() (cli_genfname): forked
     * with the parent's state, every worker would draw the same names and remove each other's files. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    srand((unsigned)getpid() * 2654435761u ^ (unsigned)ts.tv_nsec ^ (unsigned)rand());
    if (nocore) {
        struct rlimit r = {0, 0};
        setrlimit(RLIMIT_CORE, &r);
    }
    return 0;
}

ssize_t bw_send_with_fd(int sock, const void *buf, size_t len, int fd) {
    struct iovec iov = {(void *)buf, len};
    union {
        char space[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        memset(&u, 0, sizeof(u));
        msg.msg_control = u.space;
        msg.msg_controllen = sizeof(u.space);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

ssize_t bw_recv_with_fd(int sock, void *buf, size_t len, int *fd) {
    *fd = -1;
    struct iovec iov = {buf, len};
    union {
        char space[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.space;
    msg.msg_controllen = sizeof(u.space);
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*fd < 0) *fd = got;
            else close(got); /* one descriptor a message: any more are not ours to keep */
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        if (*fd >= 0) close(*fd);
        *fd = -1;
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

int bw_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int bw_seqpacket_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }

int *bw_scan_table(void) {
    void *p = mmap(NULL, BW_SCAN_TABLE_CELLS * sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : (int *)p;
}

int bw_scan_table_enter(int *table, int pid) {
    for (int i = 0; i < BW_SCAN_TABLE_CELLS; i++) {
        int expected = 0;
        if (__atomic_load_n(&table[i], __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&table[i], &expected, pid, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return i;
    }
    return -1;
}

void bw_scan_table_leave(int *table, int index) { __atomic_store_n(&table[index], 0, __ATOMIC_RELEASE); }

int bw_scan_table_count(const int *table) {
    int n = 0;
    for (int i = 0; i < BW_SCAN_TABLE_CELLS; i++) n += __atomic_load_n(&table[i], __ATOMIC_RELAXED) != 0;
    return n;
}

void bw_scan_table_forget(int *table, int pid) {
    for (int i = 0; i < BW_SCAN_TABLE_CELLS; i++) {
        int expected = pid;
        __atomic_compare_exchange_n(&table[i], &expected, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
}
