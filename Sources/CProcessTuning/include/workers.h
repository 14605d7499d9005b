// Process plumbing for the engine host and its scan workers (EngineHost.swift): fork, descriptors
// passed over unix sockets (SCM_RIGHTS), memfd, prctl. Swift cannot use CMSG_* or variadic prctl.
#ifndef BREAKWATER_WORKERS_H
#define BREAKWATER_WORKERS_H

#include <stddef.h>
#include <sys/types.h>

/// fork(); in the child: named `name` (PR_SET_NAME), killed with SIGKILL when the parent ends
/// (PR_SET_PDEATHSIG; exits at once when the parent is already gone), every signal unblocked and at its
/// default action but SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 (ignored: the child ends
/// with the daemon, not with a signal meant for the whole unit), no core dump when `nocore` (a worker
/// maps the whole engine).
/// Returns as fork() does.
pid_t bw_fork_child(const char *name, int nocore);

/// Sends one message of `len` bytes with descriptor `fd` attached (-1: none). Returns bytes sent or -1.
ssize_t bw_send_with_fd(int sock, const void *buf, size_t len, int fd);

/// Receives one message into `buf`; `*fd` gets a descriptor that came with it (close-on-exec), else -1.
/// Returns bytes received, 0 at end of file, -1 on error (errno). Retries EINTR.
ssize_t bw_recv_with_fd(int sock, void *buf, size_t len, int *fd);

/// memfd_create(name, MFD_CLOEXEC): a file in memory. -1 on error.
int bw_memfd(const char *name);

/// SOCK_SEQPACKET socketpair, close-on-exec. 0 or -1.
int bw_seqpacket_pair(int fds[2]);

/// The cells of a scan table: the processes scanning in one place at a time, at most this many.
#define BW_SCAN_TABLE_CELLS 1024

/// A table of BW_SCAN_TABLE_CELLS process ids, all 0, in memory that every process forked after this
/// call shares with the caller (MAP_SHARED | MAP_ANONYMOUS); NULL when it cannot be made.
int *bw_scan_table(void);

/// Takes a free cell for `pid` (atomically, 0 to pid). Returns its index, or -1 when every cell is taken.
int bw_scan_table_enter(int *table, int pid);

/// Frees the cell `index` took.
void bw_scan_table_leave(int *table, int index);

/// The cells taken.
int bw_scan_table_count(const int *table);

/// Frees every cell of `pid` (a process that ended inside).
void bw_scan_table_forget(int *table, int pid);

#endif
