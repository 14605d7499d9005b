#if canImport(Glibc)
import Glibc
#endif

package enum SignalMask {
    /// The signals the daemon handles itself (libmilter's signal thread: HUP, TERM, INT; Breakwater's
    /// reload: USR2; USR1 reserved; CHLD: the engine host ended). Blocked in every thread; waited for
    /// with sigwait. (The engine host and its workers unblock them all.)
    package static let daemonSignals: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD]

    package static func blockDaemonSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in daemonSignals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }
}
