import XCTest

@testable import BreakwaterCore

final class ControlRequestParsingTests: XCTestCase {
    private func parse(_ s: String) -> Result<ControlRequest, ControlRequestError> {
        ControlProtocol.parseRequest(Array(s.utf8))
    }

    private func error(_ bytes: [UInt8]) -> String? {
        if case .failure(let e) = ControlProtocol.parseRequest(bytes) { return e.description }
        return nil
    }

    func testGoodRequests() throws {
        XCTAssertEqual(try parse("PING\n").get(), ControlRequest(verb: "PING", argument: ""))
        XCTAssertEqual(try parse("status text\r\n").get(), ControlRequest(verb: "STATUS", argument: "text"))
        XCTAssertEqual(
            try parse("  WAVES   PROMOTED w1 Breakwater.Local.X  \n").get(),
            ControlRequest(verb: "WAVES", argument: "PROMOTED w1 Breakwater.Local.X"))
        // Without a newline (the client ended its input), and with bytes after the first line.
        XCTAssertEqual(try parse("RELOAD NOWAIT").get(), ControlRequest(verb: "RELOAD", argument: "NOWAIT"))
        XCTAssertEqual(try parse("PING\nSTATUS\n").get(), ControlRequest(verb: "PING", argument: ""))
        XCTAssertEqual(try parse("WAVES PROMOTED w1 Ünïcode\n").get().argument, "PROMOTED w1 Ünïcode")
    }

    func testRefusedRequests() {
        XCTAssertEqual(error([]), "empty request: try HELP")
        XCTAssertEqual(error(Array("   \r\n".utf8)), "empty request: try HELP")
        XCTAssertEqual(
            error([0x50, 0x00, 0x0a]), "the request contains a control character (\\x00): one line of printable text")
        XCTAssertEqual(
            error(Array("WAVES PROMOTED w1 \u{1b}[2J\n".utf8)),
            "the request contains a control character (\\x1b): one line of printable text")
        XCTAssertEqual(
            error(Array("PING\tx\n".utf8)),
            "the request contains a control character (\\x09): one line of printable text")
        XCTAssertEqual(
            error(Array("PING \u{85}\n".utf8)),
            "the request contains a control character (\\x85): one line of printable text")
        XCTAssertEqual(
            error(Array("PING \u{7f}\n".utf8)),
            "the request contains a control character (\\x7f): one line of printable text")
        XCTAssertEqual(error([0x50, 0xff, 0x0a]), "the request is not a line of UTF-8 text")
        XCTAssertEqual(error(Array("P1NG\n".utf8)), "unknown request 'P1NG': try HELP")
        XCTAssertEqual(error(Array("STATUS/../x\n".utf8)), "unknown request 'STATUS/../x': try HELP")
        XCTAssertNotNil(error(Array(String(repeating: "A", count: 40).utf8)))
        XCTAssertEqual(
            error(Array(("WAVES " + String(repeating: "x", count: 1025) + "\n").utf8)),
            "the argument of WAVES is longer than 1024 bytes")
        XCTAssertNotNil(try? parse("WAVES " + String(repeating: "x", count: 1024) + "\n").get())
        let long = Array(repeating: UInt8(ascii: "A"), count: ControlProtocol.maxRequest)
        XCTAssertEqual(error(long + [10]), "request too long (at most 4096 bytes)")
        XCTAssertEqual(error(long), "request too long (at most 4096 bytes)")  // no room left for its newline
        XCTAssertEqual(
            error(Array(long.dropLast()) + [10]),
            "unknown request '" + String(repeating: "A", count: 32) + "': try HELP")
    }

    /// Any bytes give a request or an error, never a crash; an error never echoes a control character.
    func testArbitraryBytes() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            let n = Int.random(in: 0...64, using: &rng)
            let bytes = (0..<n).map { _ in
                [UInt8(ascii: "A"), 0x20, 0x0a, 0x0d, 0x1b, 0xc2, 0x85, 0xff, 0x00, UInt8(ascii: "w")].randomElement(
                    using: &rng)!
            }
            switch ControlProtocol.parseRequest(bytes) {
            case .success(let r):
                XCTAssertFalse(r.verb.isEmpty)
                XCTAssertFalse((r.verb + r.argument).unicodeScalars.contains(where: ControlProtocol.isControl))
            case .failure(let e):
                XCTAssertFalse(e.description.unicodeScalars.contains(where: ControlProtocol.isControl), e.description)
            }
        }
    }
}

final class ControlPeerTests: XCTestCase {
    func testAllowed() {
        let daemon: UInt32 = 110
        let group: UInt32 = 120
        func peer(_ uid: UInt32, _ gid: UInt32, _ groups: [UInt32] = []) -> ControlPeer {
            ControlPeer(pid: 1, uid: uid, gid: gid, groups: groups)
        }
        XCTAssertTrue(peer(0, 0).allowed(daemonUID: daemon, socketGID: group))
        XCTAssertTrue(peer(110, 65534).allowed(daemonUID: daemon, socketGID: group))
        XCTAssertTrue(peer(1000, 120).allowed(daemonUID: daemon, socketGID: group))
        XCTAssertTrue(peer(1000, 1000, [27, 120]).allowed(daemonUID: daemon, socketGID: group))
        XCTAssertFalse(peer(1000, 1000, [27, 100]).allowed(daemonUID: daemon, socketGID: group))
        XCTAssertFalse(peer(65534, 65534).allowed(daemonUID: daemon, socketGID: group))
        XCTAssertTrue(
            peer(65534, 65534).refusal(daemonUID: daemon, socketGID: group).hasPrefix("permission denied: uid 65534 "))
    }

    func testGroupsInStatus() {
        let status = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nNgid:\t0\n"
        XCTAssertEqual(ControlPeer.groups(inStatus: status), [4, 24, 27, 1000])
        XCTAssertEqual(ControlPeer.groups(inStatus: "Groups:\t\n"), [])
        XCTAssertNil(ControlPeer.groups(inStatus: "Name:\tx\n"))
    }

    func testClientRefusesALineBreakBeforeConnecting() {
        do {
            _ = try ControlProtocol.request(
                "WAVES PROMOTED w1 Breakwater.Local.A\nRELOAD", socket: "/nonexistent/control.sock", timeout: 1)
            XCTFail("sent")
        } catch {
            XCTAssertTrue(error.description.hasPrefix("the request contains a line break"), error.description)
        }
    }
}
