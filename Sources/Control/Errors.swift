// The errors an operator reads: one line each, printed by the command line as `tunvpn: error: …` with exit
// status 1, and the plain line writers the commands and the daemons share.

import Crypto
import Engine
import Glibc
import Platform
import Routing

/// A failure the operator can act on: one line, naming the thing, what is wrong and what to do.
public struct ControlError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Errors from other rooms that already describe themselves in one line.
public protocol OneLineError: Error { var oneLine: String { get } }

extension ControlError: OneLineError { public var oneLine: String { message } }
extension TunError: OneLineError { public var oneLine: String { description } }
extension IOError: OneLineError { public var oneLine: String { description } }
extension RoutingError: OneLineError { public var oneLine: String { description } }
extension KeyFileError: OneLineError { public var oneLine: String { description } }

/// Writes `tunvpn: error: MESSAGE` as one line to stderr.
public func printError(_ message: String) {
    let line = "tunvpn: error: \(message)\n"
    _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
}

/// Writes one line to stdout at once (no buffering surprises for log readers).
public func printLine(_ line: String) {
    let text = line + "\n"
    _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(1, $0.baseAddress, $0.count - 1) }
}

extension String {
    /// The string without one trailing `suffix`, if it ends with it.
    public func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
