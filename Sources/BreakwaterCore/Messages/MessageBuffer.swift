#if canImport(Glibc)
import Glibc
#endif

/// One message as the MTA hands it over: header lines as received, a blank line, the body chunks.
/// Held in memory while it is small and the shared memory budget allows; otherwise spilled to an
/// unlinked private temporary file. Each byte is copied once, from the MTA's buffer into this one.
package final class MessageBuffer {
    package enum Storage {
        case memory
        case file(fd: Int32)
    }

    private let admission: Admission
    private let spoolThreshold: UInt64
    private let spoolDirectory: String
    private var bytes: [UInt8] = []
    /// Budget held for `bytes`' capacity.
    private var reserved: UInt64 = 0
    private var fd: Int32 = -1
    /// Spool budget held for the bytes written to the spool file.
    private var spoolReserved: UInt64 = 0
    package private(set) var size: UInt64 = 0
    /// Why the message went to disk, if it did: "size" or "memory budget".
    package private(set) var spoolReason: String?
    /// Held in memory in a memfd (made by `memoryFile`, mapped here and written through the map) rather
    /// than an array, so that a scan worker can be handed the message as a descriptor without a copy.
    private let makeMemoryFile: (() -> Int32)?
    private var memoryFile: Bool { makeMemoryFile != nil }
    private var memoryFD: Int32 = -1
    private var map: UnsafeMutableRawPointer?
    private var mapped = 0
    /// The memfd's length now (0 between messages: the session keeps its memfd and map, not the pages).
    private var fileSize = 0

    package struct SpoolError: Error, CustomStringConvertible {
        package let description: String
        /// The spool budget (`spool-budget`) is spent: a temporary condition, not a broken spool.
        package var overBudget = false
    }

    package init(admission: Admission, spoolThreshold: UInt64, spoolDirectory: String, memoryFile: (() -> Int32)? = nil)
    {
        self.makeMemoryFile = memoryFile
        self.admission = admission
        self.spoolThreshold = spoolThreshold
        self.spoolDirectory = spoolDirectory
    }

    deinit {
        reset()
        dropMemoryFile()
    }

    /// The most an announced size (ESMTP SIZE) reserves before the message's data arrives.
    package static let maxAnnouncedReserve: UInt64 = 64 << 10

    package var storage: Storage { fd >= 0 ? .file(fd: fd) : .memory }

    /// Pre-sizes the buffer for a message the client announced (ESMTP SIZE), within the spool
    /// threshold and the budget. Saves the copies of repeated growth. The 1 KB over the announced
    /// size covers the MTA's own Received: header; a message that passes it grows once. (4 KB over
    /// it held 0.6-0.8 MB more at the peak of 200 sessions of 3.5 KB messages waiting for a scan.)
    ///
    /// The announcement is the client's word, made before any data: it reserves at most
    /// `maxAnnouncedReserve`, and only while the budget is less than half taken, so sessions that
    /// announce large messages and then idle cannot hold the budget the messages being received need.
    /// (A larger message grows geometrically from there: 64 KB to 1 MB is four copies.)
    package func expect(_ announced: UInt64) {
        guard fd < 0, bytes.isEmpty, announced > 0 else { return }
        let want = min(announced &+ 1024, spoolThreshold, MessageBuffer.maxAnnouncedReserve)
        if want > reserved && admission.reserve(want - reserved, ceiling: admission.memoryBudget / 2) {
            reserved = want
            if memoryFile { _ = grow(to: Int(want)) } else { bytes.reserveCapacity(Int(want)) }
        }
    }

    package func append(_ text: String) throws(SpoolError) {
        var t = text
        let failure = t.withUTF8 { p -> SpoolError? in
            do throws(SpoolError) { try append(UnsafeRawBufferPointer(p)) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    package func append(_ chunk: UnsafeRawBufferPointer) throws(SpoolError) {
        let n = UInt64(chunk.count)
        if n == 0 { return }
        if fd >= 0 {
            try writeSpooled(chunk)
            return
        }
        let needed = size + n
        if needed > spoolThreshold {
            try spill(reason: "size")
            try writeSpooled(chunk)
            return
        }
        if needed > UInt64(memoryFile ? fileSize : bytes.capacity) || needed > reserved {
            // Grow geometrically (but not past the threshold) and hold budget for the whole capacity.
            let newCapacity = min(max(needed, reserved * 2, 16 << 10), spoolThreshold)
            if newCapacity > reserved {
                guard admission.reserve(newCapacity - reserved) else {
                    try spill(reason: "memory budget")
                    try writeSpooled(chunk)
                    return
                }
                reserved = newCapacity
                if !memoryFile { bytes.reserveCapacity(Int(newCapacity)) }
            }
            if memoryFile && needed > UInt64(fileSize) && !grow(to: Int(max(newCapacity, needed))) {
                try spill(reason: "memory file")
                try writeSpooled(chunk)
                return
            }
        }
        if memoryFile {
            (map! + Int(size)).copyMemory(from: chunk.baseAddress!, byteCount: chunk.count)
        } else {
            bytes.append(contentsOf: chunk)
        }
        size += n
    }

    private func spill(reason: String) throws(SpoolError) {
        // The bytes held so far and the chunk that did not fit must both fit the spool budget; the
        // chunk's share is reserved by the write that follows.
        guard admission.reserveSpool(size) else { throw overBudget() }
        spoolReserved = size
        var template = Array((spoolDirectory + "/breakwater-msg.XXXXXX").utf8CString)
        let f = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if f < 0 {
            throw SpoolError(description: "cannot create a spool file in \(spoolDirectory): \(FileWalk.errnoString())")
        }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        _ = fcntl(f, F_SETFD, FD_CLOEXEC)
        fd = f
        spoolReason = reason
        let held = bytes
        bytes = []
        let failure =
            (memoryFile ? UnsafeRawBufferPointer(start: map, count: Int(size)) : nil).map {
                p -> SpoolError? in
                do throws(SpoolError) { try writeAll(p) } catch { return error }
                return nil
            }
            ?? held.withUnsafeBytes { p -> SpoolError? in
                do throws(SpoolError) { try writeAll(p) } catch { return error }
                return nil
            }
        dropMemoryFile()
        admission.release(reserved)
        reserved = 0
        if let failure { throw failure }
    }

    private func overBudget() -> SpoolError {
        SpoolError(
            description: "the spool budget (\(ByteSize.format(admission.spoolBudget)), spool-budget) is spent",
            overBudget: true)
    }

    /// Writes `p` to the spool file, within the spool budget.
    private func writeSpooled(_ p: UnsafeRawBufferPointer) throws(SpoolError) {
        let n = UInt64(p.count)
        guard admission.reserveSpool(n) else { throw overBudget() }
        spoolReserved += n
        try writeAll(p)
        size += n
    }

    private func writeAll(_ p: UnsafeRawBufferPointer) throws(SpoolError) {
        var off = 0
        while off < p.count {
            let w = write(fd, p.baseAddress! + off, p.count - off)
            if w < 0 {
                if errno == EINTR { continue }
                throw SpoolError(description: "cannot write the spool file: \(FileWalk.errnoString())")
            }
            off += w
        }
    }

    /// Runs `body` over the in-memory bytes (nil when spooled).
    package func withMemory<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard fd < 0 else { return nil }
        if memoryFile { return body(UnsafeRawBufferPointer(start: size > 0 ? map : nil, count: Int(size))) }
        return bytes.withUnsafeBytes(body)
    }

    /// The message as a descriptor and its size (its first `size` bytes): the spool file, or the
    /// memfd of a message held in memory (`memoryFile`; made now for an empty message). nil when there
    /// is none (an array in memory, or the memfd cannot be made).
    package func descriptor() -> (fd: Int32, size: Int)? {
        if fd >= 0 { return (fd, Int(size)) }
        guard memoryFile else { return nil }
        if memoryFD < 0 && !grow(to: 4096) { return nil }
        return (memoryFD, Int(size))
    }

    /// Makes the memfd `capacity` bytes long, and maps it again when the map is shorter (the bytes
    /// stay where they are: in the file). False when it cannot (then nothing changed but a failed
    /// attempt).
    private func grow(to capacity: Int) -> Bool {
        if capacity <= fileSize { return true }
        if memoryFD < 0 {
            memoryFD = makeMemoryFile?() ?? -1
            if memoryFD < 0 { return false }
        }
        guard ftruncate(memoryFD, off_t(capacity)) == 0 else { return false }
        fileSize = capacity
        if capacity <= mapped { return true }
        guard let m = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, memoryFD, 0), m != MAP_FAILED else {
            return false
        }
        if let map { munmap(map, mapped) }
        map = m
        mapped = capacity
        return true
    }

    /// Bytes of its memfd a session keeps between messages, pages and all (`emptyMemoryFile`).
    package static let keptMemoryFileBytes = 16 << 10

    /// Between messages of a session: the memfd and its map are kept for the next message (no
    /// memfd_create, mmap, munmap and close per message), and so are its first `keptMemoryFileBytes`
    /// (the first growth's size): a small message then costs no ftruncate and no page fault, as an
    /// array's bytes stay in malloc's free lists; the pages past them are freed. At most 16 KB a
    /// session outside the memory budget (which counts messages, not what a session keeps between them).
    private func emptyMemoryFile() {
        let keep = MessageBuffer.keptMemoryFileBytes
        guard memoryFD >= 0, fileSize > keep else { return }
        if ftruncate(memoryFD, off_t(keep)) == 0 {
            fileSize = keep
        } else {
            dropMemoryFile()
        }
    }

    private func dropMemoryFile() {
        if let map { munmap(map, mapped) }
        map = nil
        mapped = 0
        fileSize = 0
        if memoryFD >= 0 { close(memoryFD) }
        memoryFD = -1
    }

    /// Writes the whole message to `out` (a copy for ops: CrashSuspects.keepCopy). False on a write or
    /// read error.
    package func copy(to out: Int32) -> Bool {
        func put(_ p: UnsafeRawBufferPointer) -> Bool {
            var off = 0
            while off < p.count {
                let w = write(out, p.baseAddress! + off, p.count - off)
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { return false }
                off += w
            }
            return true
        }
        if fd < 0 { return withMemory { put($0) } ?? false }
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        var at: off_t = 0
        while true {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, at) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return false }
            if n == 0 { return true }
            guard buf.withUnsafeBytes({ put(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) else { return false }
            at += off_t(n)
        }
    }

    /// Drops the message: frees memory, returns the budget, closes the spool file.
    package func reset() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        bytes = []
        emptyMemoryFile()
        if reserved > 0 {
            admission.release(reserved)
            reserved = 0
        }
        if spoolReserved > 0 {
            admission.releaseSpool(spoolReserved)
            spoolReserved = 0
        }
        size = 0
        spoolReason = nil
    }
}
