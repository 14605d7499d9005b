/// Receives each decoded layer of a message during a scan (text parts, HTML, attachments), as libclamav
/// hands them to its file-inspection callback. Used by features that need the decoded text without a
/// second MIME parser.
package protocol LayerInspector: AnyObject {
    /// `type` is libclamav's file type (for example `CL_TYPE_TEXT_ASCII`, `CL_TYPE_HTML`), `fd` a readable
    /// descriptor positioned anywhere; read with `pread`.
    func inspect(fd: Int32, type: String, depth: Int, size: Int)
    /// The same, with libclamav's mapped view of the layer when it has one (`buffer`, nil otherwise):
    /// reading it costs no system call. The default forwards to `inspect(fd:type:depth:size:)`.
    func inspect(fd: Int32, type: String, depth: Int, size: Int, buffer: UnsafeRawBufferPointer?)
}

extension LayerInspector {
    package func inspect(fd: Int32, type: String, depth: Int, size: Int, buffer: UnsafeRawBufferPointer?) {
        inspect(fd: fd, type: type, depth: depth, size: size)
    }
}
