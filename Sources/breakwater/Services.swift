import BreakwaterCore
import BreakwaterMetrics
import BreakwaterMilter

/// The services `breakwater run` starts beside the milter, and the per-message observers it feeds.
/// Each feature adds its own line here.
func installServices(on daemon: MilterDaemon) {
    ControlServer.install(on: daemon)  // ops: the control socket (reload, status; others register requests on it)
    SignatureWatch.install(on: daemon)  // ops: self-check, a reload when a signature file changes
    MetricsService.install(on: daemon)  // metrics: /metrics endpoint and its per-message observer
    WaveService.install(on: daemon)  // waves: ends quiet waves (and logs them) every few seconds
    SystemdNotify.install(on: daemon)  // deb: READY=1 for Type=notify once the socket listens (keep last)
}
