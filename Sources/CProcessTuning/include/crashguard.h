// Crash containment (CrashGuard in BreakwaterMilter): a handler for the signals a crash raises
// (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) that, with async-signal-safe steps only, marks the
// in-flight record of the scan the crashing thread held and stops the milter's listening sockets from
// taking connections, then lets the signal end the process.
#ifndef BREAKWATER_CRASHGUARD_H
#define BREAKWATER_CRASHGUARD_H

/// Records the listening sockets the handler shuts down (at most 8; later calls replace the set).
void bw_crash_set_listeners(const int *fds, int count);

/// Installs the handler for the crash signals (once; later calls do nothing). After its work the
/// handler lets the signal end the process at once (the default action), or, with `chain` set, hands
/// it to the handler installed before (Swift's backtracer, when SWIFT_BACKTRACE enabled it: that
/// takes about 30 s in the daemon). 0 on success, else errno.
int bw_crash_install(int chain);

/// The calling thread scans the message whose in-flight record is mapped at `record` (NULL: none). On
/// a crash in this thread the handler stores 'C' in its first byte.
void bw_crash_set_current(void *record);

/// How many times the handler ran in this process (for tests of the handler itself).
int bw_crash_handled(void);

#endif
