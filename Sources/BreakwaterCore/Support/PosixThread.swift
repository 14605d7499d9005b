#if canImport(Glibc)
import Glibc
#endif

/// A plain joinable POSIX thread (scanner threads, background reloads): no Foundation, no executor.
package final class PosixThread: @unchecked Sendable {
    private var handle = pthread_t()
    private let body: @Sendable () -> Void

    private init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    /// Starts a thread; stops the process if it cannot (only for threads a command cannot do
    /// without at its start: the daemon's run-time threads use `tryStart`).
    @discardableResult
    package static func start(stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) -> PosixThread {
        switch tryStart(stackSize: stackSize, body) {
        case .success(let t): return t
        case .failure(let e): fatalError("cannot start a thread: \(e)")
        }
    }

    package struct StartError: Error, CustomStringConvertible, Sendable {
        package let code: Int32
        package var description: String { "pthread_create: \(String(cString: strerror(code)))" }
    }

    /// Starts a thread, or says why not (EAGAIN: the process or its cgroup is at its task limit).
    package static func tryStart(stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) -> Result<
        PosixThread, StartError
    > {
        let t = PosixThread(body)
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, stackSize)
        let box = Unmanaged.passRetained(t).toOpaque()
        let rc = pthread_create(
            &t.handle, &attr,
            { arg in
                let t = Unmanaged<PosixThread>.fromOpaque(arg!).takeRetainedValue()
                t.body()
                return nil
            }, box)
        pthread_attr_destroy(&attr)
        if rc != 0 {
            Unmanaged<PosixThread>.fromOpaque(box).release()
            return .failure(StartError(code: rc))
        }
        return .success(t)
    }

    package func join() { pthread_join(handle, nil) }
    package func detach() { pthread_detach(handle) }
}
