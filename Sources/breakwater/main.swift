import BreakwaterMilter

// libmilter's signal thread turns SIGHUP/SIGTERM into "stop" and SIGINT into "abort"; every thread the
// daemon creates must inherit a mask with these blocked, so it is set here before any thread exists.
if CommandLine.arguments.dropFirst().first == "run" {
    // Re-executes once with glibc's per-thread malloc caches limited (MallocThreadCache says why).
    ThreadCacheLimit.apply()
    SignalMask.blockDaemonSignals()
}
BreakwaterCommand.main()
