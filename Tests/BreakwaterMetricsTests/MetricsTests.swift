import Foundation
import XCTest

@testable import BreakwaterCore
@testable import BreakwaterMetrics

/// Sample lines of an exposition as "name{labels}" -> value.
private func samples(_ text: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else { continue }
        out[String(line[..<space])] = v
    }
    return out
}

private func record(_ d: Decision, scanned: Bool = true, bytes: UInt64 = 2000, wait: Double = 0, scan: Double = 0.003)
    -> MessageRecord
{
    MessageRecord(
        queueID: "Q", client: "192.0.2.1", sender: "<a@example.org>", recipients: 1, bytes: bytes, decision: d,
        waitSeconds: wait, scanSeconds: scan, scanned: scanned)
}

private func infected(_ names: [String], _ action: Action = .reject) -> Decision {
    Decision(verdict: .infected, action: action, reply: nil, signatures: names)
}

final class ListenAddressTests: XCTestCase {
    func testParsesIPv4IPv6AndLocalhost() throws {
        XCTAssertEqual(try ListenAddress.parse("127.0.0.1:9897"), ListenAddress(address: [127, 0, 0, 1], port: 9897))
        XCTAssertEqual(try ListenAddress.parse("localhost:80"), ListenAddress(address: [127, 0, 0, 1], port: 80))
        let v6 = try ListenAddress.parse("[::1]:9897")
        XCTAssertEqual(v6.address, [UInt8](repeating: 0, count: 15) + [1])
        XCTAssertEqual(v6.port, 9897)
        XCTAssertEqual(v6.description, "[::1]:9897")
        XCTAssertEqual(try ListenAddress.parse("0.0.0.0:1").description, "0.0.0.0:1")
    }

    func testRejectsWhatIsNotAnAddress() {
        for bad in [
            "9897", ":9897", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "::1:9897",
            "[::1]9897", "[127.0.0.1]:9897", "[::1", "example.org:9897", "127.0.0.1:98x7", "[::1]:",
        ] {
            XCTAssertThrowsError(try ListenAddress.parse(bad), bad)
        }
    }

    func testConfigChecksTheMetricsKeys() throws {
        var c = Config()
        try c.set("metrics", "[::1]:9100", source: "t", line: 1)
        XCTAssertEqual(c.metrics, "[::1]:9100")
        try c.set("metrics", "", source: "t", line: 2)
        XCTAssertEqual(c.metrics, "")
        XCTAssertThrowsError(try c.set("metrics", "localhost", source: "t", line: 3)) { e in
            XCTAssertTrue("\(e)".hasPrefix("t:3: metrics: "), "\(e)")
        }
        XCTAssertEqual(c.metricsMaxSignatures, 100)
        try c.set("metrics-max-signatures", "5", source: "t", line: 4)
        XCTAssertEqual(c.metricsMaxSignatures, 5)
        XCTAssertThrowsError(try c.set("metrics-max-signatures", "-1", source: "t", line: 5))
    }
}

final class RequestParsingTests: XCTestCase {
    private func parse(_ s: String) -> Result<HTTPRequest, HTTPResponseError> {
        HTTPEndpoint.parseHead(ArraySlice(Array(s.utf8)))
    }

    private func status(_ s: String) -> Int? {
        if case .failure(let e) = parse(s) { return e.response.status }
        return nil
    }

    func testGoodRequestLines() throws {
        XCTAssertEqual(
            try parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").get(),
            HTTPRequest(method: "GET", path: "/metrics", host: "x"))
        XCTAssertEqual(
            try parse("GET /metrics?name[]=x HTTP/1.0\n\n").get(),
            HTTPRequest(method: "GET", path: "/metrics", version: "HTTP/1.0"))
        XCTAssertEqual(
            try parse("POST /health HTTP/1.1\r\nhOST:  [::1]:9 \r\n\r\n").get(),
            HTTPRequest(method: "POST", path: "/health", host: "[::1]:9"))
        XCTAssertEqual(
            try parse("GET / HTTP/1.1\r\nX-A: b\tc\r\nHost:\r\n\r\n").get(),
            HTTPRequest(method: "GET", path: "/", host: ""))
    }

    func testMalformedHeadersGet400() {
        for bad in [
            "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\u{1b}[2J\r\n\r\n",
            "GET / HTTP/1.1\r\nHo st: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        ] {
            XCTAssertEqual(status(bad), 400, bad.debugDescription)
        }
    }

    func testParseIncrementally() {
        let req = Array("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\nextra".utf8)
        for n in 0..<(req.count - 5) {
            guard case .incomplete = HTTPRequest.parse(Array(req[..<n])) else { return XCTFail("\(n)") }
        }
        guard case .request(let r, let len) = HTTPRequest.parse(req) else { return XCTFail() }
        XCTAssertEqual(r.host, "localhost")
        XCTAssertEqual(len, req.count - 5)
        guard case .failure(let e) = HTTPRequest.parse(Array(repeating: UInt8(ascii: "a"), count: 8193)) else {
            return XCTFail()
        }
        XCTAssertEqual(e.status, 431)
        guard
            case .failure(let e2) = HTTPRequest.parse(
                Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n").utf8))
        else { return XCTFail() }
        XCTAssertEqual(e2.status, 431)
    }

    func testHostRule() throws {
        let lo = try ListenAddress.parse("127.0.0.1:9897")
        let v6 = try ListenAddress.parse("[::1]:9897")
        let lan = try ListenAddress.parse("192.0.2.10:9897")
        let any = try ListenAddress.parse("0.0.0.0:9897")
        for ok in [
            "127.0.0.1", "127.0.0.1:9897", "127.0.0.1:80", "localhost", "LocalHost:9897", "127.1.2.3",
            "[::1]", "[::1]:9897", "[::ffff:127.0.0.1]:1",
        ] {
            XCTAssertTrue(HTTPEndpoint.hostAllowed(ok, version: "HTTP/1.1", listen: lo), ok)
            XCTAssertTrue(HTTPEndpoint.hostAllowed(ok, version: "HTTP/1.1", listen: v6), ok)
            XCTAssertTrue(HTTPEndpoint.hostAllowed(ok, version: "HTTP/1.1", listen: lan), ok)
        }
        for bad in [
            "evil.example", "evil.example:9897", "127.0.0.1.evil.example", "localhost.evil.example", "", ":9897",
            "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:+80", "127.0.0.1 evil", "[::1", "[::1]x", "::1",
            "[fe80::1%25eth0]", "0x7f.1", "2130706433", "[::2]", "10.0.0.1", "192.0.2.10:80", "localhost.",
            "127.0.0.1:9897:1", "[::1]:9897]",
        ] {
            XCTAssertFalse(HTTPEndpoint.hostAllowed(bad, version: "HTTP/1.1", listen: lo), bad)
        }
        XCTAssertTrue(HTTPEndpoint.hostAllowed("192.0.2.10:9897", version: "HTTP/1.1", listen: lan))
        XCTAssertTrue(HTTPEndpoint.hostAllowed("192.0.2.99", version: "HTTP/1.1", listen: any))  // any IP literal
        XCTAssertFalse(HTTPEndpoint.hostAllowed("evil.example", version: "HTTP/1.1", listen: any))
        XCTAssertTrue(HTTPEndpoint.hostAllowed(nil, version: "HTTP/1.0", listen: lo))
        XCTAssertFalse(HTTPEndpoint.hostAllowed(nil, version: "HTTP/1.1", listen: lo))
    }

    func testMalformedRequestLinesGet400() {
        for bad in [
            "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n", "GET http://x/metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n",
            "GET /met\u{7f}rics HTTP/1.1\r\n\r\n", "GET /métrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nX: \0\r\n\r\n",
            "\r\n\r\n", "GET /metrics HTTP/1.1 extra\r\n\r\n",
        ] {
            XCTAssertEqual(status(bad), 400, bad.debugDescription)
        }
    }

    func testHeadEnd() {
        XCTAssertEqual(HTTPRequest.headEnd(Array("GET / HTTP/1.1\r\n\r\nrest".utf8), from: 0), 18)
        XCTAssertEqual(HTTPRequest.headEnd(Array("GET / HTTP/1.1\n\n".utf8), from: 0), 16)
        XCTAssertNil(HTTPRequest.headEnd(Array("GET / HTTP/1.1\r\nHost: x\r\n".utf8), from: 0))
    }
}

final class InstrumentTests: XCTestCase {
    func testObserverCountsDetectionsWithACapAndHistogramsPerScan() {
        let m = PrometheusInstruments(maxSignatures: 2)
        m.observe(record(infected(["A.Sig"])))
        m.observe(record(infected(["A.Sig", "B.Sig"])))
        m.observe(record(infected(["C.Sig"], .tag)))
        m.observe(record(infected(["D.Sig"], .quarantine)))
        m.observe(record(Decision(verdict: .clean, action: .accept, reply: nil), bytes: 100_000, scan: 0.2))
        // Not scanned: no histogram sample, no detection even with a limit name in signatures.
        m.observe(record(Policy(config: Config()).busy(.busy), scanned: false))
        m.observe(
            record(
                Decision(verdict: .limit, action: .accept, reply: nil, signatures: ["Heuristics.Limits.Exceeded"]),
                scanned: false))
        // A wait timeout is a wait sample but no scan.
        m.observe(record(Policy(config: Config()).busy(.timeout), scanned: false, wait: 20))

        let s = samples(String(decoding: m.exposition(), as: UTF8.self))
        XCTAssertEqual(s[#"breakwater_detections_total{signature="A.Sig"}"#], 2)
        XCTAssertEqual(s[#"breakwater_detections_total{signature="B.Sig"}"#], 1)
        XCTAssertEqual(s[#"breakwater_detections_total{signature="other"}"#], 2)
        XCTAssertNil(s[#"breakwater_detections_total{signature="C.Sig"}"#])
        XCTAssertNil(s[#"breakwater_detections_total{signature="Heuristics.Limits.Exceeded"}"#])
        XCTAssertEqual(s["breakwater_scan_duration_seconds_count"], 5)
        XCTAssertEqual(s["breakwater_message_size_bytes_count"], 5)
        XCTAssertEqual(s["breakwater_slot_wait_seconds_count"], 6)
        XCTAssertEqual(s[#"breakwater_scan_duration_seconds_bucket{le="0.005"}"#], 4)
        XCTAssertEqual(s[#"breakwater_scan_duration_seconds_bucket{le="0.25"}"#], 5)
        XCTAssertEqual(s["breakwater_message_size_bytes_sum"], 4 * 2000 + 100_000)
        XCTAssertEqual(s[#"breakwater_slot_wait_seconds_bucket{le="10.0"}"#], 5)
        XCTAssertEqual(s[#"breakwater_slot_wait_seconds_bucket{le="20.0"}"#], 6)
    }

    func testLabelValuesAreEscaped() {
        let m = PrometheusInstruments(maxSignatures: 5)
        m.observe(record(infected(["Odd\"Name\\With\nBreak"])))
        let text = String(decoding: m.exposition(), as: UTF8.self)
        XCTAssertTrue(text.contains(#"breakwater_detections_total{signature="Odd\"Name\\With\nBreak"} 1"#), text)
    }

    func testZeroCapCountsEverythingAsOther() {
        let m = PrometheusInstruments(maxSignatures: 0)
        m.observe(record(infected(["A.Sig"])))
        m.observe(record(infected(["other"])))
        let s = samples(String(decoding: m.exposition(), as: UTF8.self))
        XCTAssertEqual(s[#"breakwater_detections_total{signature="other"}"#], 2)
        XCTAssertNil(s[#"breakwater_detections_total{signature="A.Sig"}"#])
    }

    func testMirroredCountersFollowTheSnapshotAndGaugesAreSet() {
        let m = PrometheusInstruments(maxSignatures: 1, info: [("libclamav", "1.0.9")])
        var snap = MetricsSnapshot()
        snap.messages = [.accepted: 3, .rejected: 2, .skipped: 1]
        snap.tempfails = [.busy: 4]
        snap.scans = 5
        snap.slots = 2
        snap.slotsBusy = 1
        snap.memoryBudgetBytes = 256 << 20
        snap.lastReloadSucceeded = false
        snap.engineGeneration = 3
        m.update(snap)
        m.update(snap)  // the same values again add nothing
        var s = samples(String(decoding: m.exposition(), as: UTF8.self))
        XCTAssertEqual(s[#"breakwater_messages_total{outcome="accepted"}"#], 3)
        XCTAssertEqual(s[#"breakwater_messages_total{outcome="rejected"}"#], 2)
        XCTAssertEqual(s[#"breakwater_messages_total{outcome="tempfailed"}"#], 0)
        XCTAssertEqual(s[#"breakwater_messages_total{outcome="skipped"}"#], 1)
        XCTAssertEqual(s[#"breakwater_tempfails_total{cause="busy"}"#], 4)
        XCTAssertEqual(s[#"breakwater_tempfails_total{cause="memory_budget"}"#], 0)
        XCTAssertEqual(s["breakwater_scans_total"], 5)
        XCTAssertEqual(s["breakwater_scan_slots"], 2)
        XCTAssertEqual(s["breakwater_scan_slots_busy"], 1)
        XCTAssertEqual(s["breakwater_memory_budget_bytes"], Double(256 << 20))
        XCTAssertEqual(s["breakwater_reload_last_success"], 0)
        XCTAssertEqual(s["breakwater_engine_generation"], 3)
        XCTAssertEqual(s[#"breakwater_build_info{version="\#(Breakwater.version)",libclamav="1.0.9"}"#], 1)

        snap.messages[.accepted] = 10
        snap.scans = 12
        m.update(snap)
        s = samples(String(decoding: m.exposition(), as: UTF8.self))
        XCTAssertEqual(s[#"breakwater_messages_total{outcome="accepted"}"#], 10)
        XCTAssertEqual(s["breakwater_scans_total"], 12)
    }

    func testEveryFamilyHasHelpAndType() {
        let m = PrometheusInstruments(maxSignatures: 1)
        let text = String(decoding: m.exposition(), as: UTF8.self)
        var typed = Set<String>()
        var helped = Set<String>()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 3)
            if parts.count >= 3 && parts[0] == "#" {
                if parts[1] == "TYPE" { typed.insert(String(parts[2])) }
                if parts[1] == "HELP" { helped.insert(String(parts[2])) }
            }
        }
        let expected: Set<String> = [
            "messages_total", "tempfails_total", "scans_total", "rescans_total", "scan_crashes_total",
            "scan_worker_restarts_total",
            "detections_total",
            "scan_duration_seconds", "slot_wait_seconds", "message_size_bytes",
            "scan_slots_busy", "scan_slots", "messages_waiting", "messages_waiting_limit", "messages_in_progress",
            "buffered_bytes", "memory_budget_bytes", "spooled_bytes", "spool_budget_bytes", "milter_sessions",
            "process_threads", "engine_generation",
            "signatures_loaded", "engine_loaded_timestamp_seconds", "reload_last_timestamp_seconds",
            "reload_last_success", "reload_duration_seconds", "start_time_seconds", "build_info",
            "engine_memory_bytes", "reload_peak_rss_bytes", "reload_last_mode",
        ]
        XCTAssertEqual(typed, Set(expected.map { "breakwater_" + $0 }))
        XCTAssertEqual(typed, helped)
        XCTAssertTrue(text.contains("# TYPE breakwater_messages_total counter\n"))
        XCTAssertTrue(text.contains("# TYPE breakwater_scan_duration_seconds histogram\n"))
        XCTAssertTrue(text.contains("# TYPE breakwater_scan_slots gauge\n"))
    }

    func testOutcomeOfDecisions() {
        XCTAssertEqual(MessageOutcome(Decision(verdict: .skipped, action: .accept, reply: nil)), .skipped)
        XCTAssertEqual(MessageOutcome(Decision(verdict: .clean, action: .accept, reply: nil)), .accepted)
        XCTAssertEqual(MessageOutcome(infected(["x"], .discard)), .discarded)
        XCTAssertEqual(MessageOutcome(Policy(config: Config()).busy(.memoryBudget)), .tempfailed)
    }

    func testStatsCountSkippedOnceNotAlsoAccepted() {
        let st = Stats()
        st.count(Decision(verdict: .skipped, action: .accept, reply: nil))
        st.count(Decision(verdict: .clean, action: .accept, reply: nil))
        XCTAssertEqual(st.accepted.load(ordering: .relaxed), 1)
        XCTAssertEqual(st.skipped.load(ordering: .relaxed), 1)
    }

    func testThreadsFromProcStatus() {
        XCTAssertEqual(ProcessStatus.threads(inStatus: "Name:\tx\nThreads:\t7\nSigQ:\t0/1\n"), 7)
        XCTAssertNil(ProcessStatus.threads(inStatus: "Name:\tx\n"))
        XCTAssertGreaterThanOrEqual(ProcessStatus.threads() ?? 0, 1)
    }
}

/// The listener itself, on 127.0.0.1 with a port the kernel picks, stopped at the end of each test.
final class EndpointTests: XCTestCase {
    private var endpoint: HTTPEndpoint!

    override func setUpWithError() throws {
        endpoint = HTTPEndpoint(
            address: ListenAddress(address: [127, 0, 0, 1], port: 0), maxRequestBytes: 1024, timeout: 0.5
        ) { req in
            req.path == "/metrics" ? .text(200, "OK", "fine\n") : .text(404, "Not Found", "no\n")
        }
        try endpoint.start()
        XCTAssertNotEqual(endpoint.port, 0)
    }

    override func tearDown() {
        endpoint.stop()
    }

    private func connect() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = endpoint.port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        XCTAssertEqual(rc, 0)
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Sends `request` and reads to EOF.
    private func exchange(_ request: [UInt8]) throws -> String {
        let fd = try connect()
        defer { close(fd) }
        var off = 0
        while off < request.count {
            let n = request.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + off, request.count - off, Int32(MSG_NOSIGNAL))
            }
            if n <= 0 { break }
            off += n
        }
        return readAll(fd)
    }

    private func readAll(_ fd: Int32) -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    func testAnswersAndCloses() throws {
        let r = try exchange(Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:\(endpoint.port)\r\n\r\n".utf8))
        XCTAssertTrue(r.hasPrefix("HTTP/1.1 200 OK\r\n"), r)
        XCTAssertTrue(
            try exchange(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)).hasPrefix(
                "HTTP/1.1 421 Misdirected Request\r\n"))
        XCTAssertTrue(r.contains("\r\nContent-Length: 5\r\n"), r)
        XCTAssertTrue(r.contains("\r\nConnection: close\r\n"), r)
        XCTAssertTrue(r.hasSuffix("\r\n\r\nfine\n"), r)
        XCTAssertTrue(try exchange(Array("GET /x HTTP/1.0\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 404 "))
        XCTAssertTrue(try exchange(Array("BREW /metrics\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 400 "))
    }

    func testOversizedHeadGets431() throws {
        let big = Array("GET /metrics HTTP/1.1\r\nX-Pad: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 100_000)
        let r = try exchange(big)
        XCTAssertTrue(r.hasPrefix("HTTP/1.1 431 "), String(r.prefix(80)))
        // And the endpoint still serves.
        XCTAssertTrue(
            try exchange(Array("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 200 "))
    }

    func testIncompleteHeadTimesOutWith408() throws {
        let fd = try connect()
        defer { close(fd) }
        _ = "GET /metrics HTTP/1.1\r\n".withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        let r = readAll(fd)
        XCTAssertTrue(r.hasPrefix("HTTP/1.1 408 "), r)
    }

    /// Before its thread starts, the endpoint serves on the caller's thread without waiting (the
    /// daemon's loading thread, while the first engine loads), and the thread then takes over the
    /// connections it holds.
    func testServesOnTheCallersThreadBeforeItsOwnThenHandsOver() throws {
        endpoint.stop()
        endpoint = HTTPEndpoint(address: ListenAddress(address: [127, 0, 0, 1], port: 0), timeout: 5) { _ in
            .text(200, "OK", "fine\n")
        }
        try endpoint.openListener()
        func send(_ fd: Int32, _ text: String) {
            _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }
        let whole = try connect()
        defer { close(whole) }
        send(whole, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let partial = try connect()
        defer { close(partial) }
        send(partial, "GET /metrics HTTP/1.1\r\n")
        var p = pollfd(fd: whole, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&p, 1, 100), 0, "answered with no one serving")
        let started = Now.monotonic()
        var calls = 0
        while poll(&p, 1, 0) == 0 && calls < 500 {
            let before = Now.monotonic()
            endpoint.serveWaiting(until: before + 0.01)
            XCTAssertLessThan(Now.monotonic() - before, 0.5, "serveWaiting waited")
            calls += 1
            usleep(1000)
        }
        XCTAssertLessThan(Now.monotonic() - started, 2)
        XCTAssertTrue(readAll(whole).hasPrefix("HTTP/1.1 200 OK\r\n"))
        try endpoint.start()
        send(partial, "Host: localhost\r\n\r\n")
        XCTAssertTrue(readAll(partial).hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    func testStopEndsAStalledConnection() throws {
        let fd = try connect()
        defer { close(fd) }
        usleep(50_000)  // the server thread is now waiting on this connection
        endpoint.stop()
        XCTAssertEqual(readAll(fd), "")
        // tearDown's stop() is then a no-op.
    }
}
