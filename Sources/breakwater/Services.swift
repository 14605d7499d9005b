import BreakwaterCore
import BreakwaterMilter

/// The services `breakwater run` starts beside the milter, and the per-message observers it feeds.
/// Each feature adds its own line here.
func installServices(on daemon: MilterDaemon) {
    _ = daemon
}
