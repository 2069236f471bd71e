// QR codes for `tunvpn add-client --qr`: libqrencode (qrencode(1)'s library) encodes; this file only draws
// the symbol with Unicode half blocks, two module rows per text line, inside a quiet zone.

import CQREncode

/// A QR symbol: a square of modules, true for dark.
public struct QRCode: Equatable, Sendable {
    /// The QR version (1...40): the symbol is 17 + 4 × version modules wide.
    public var version: Int
    /// Modules per side.
    public var width: Int
    /// Row-major, `width × width`, true for a dark module.
    public var modules: [Bool]

    /// Encodes `bytes` in 8-bit mode at error correction level L (the smallest symbol; a terminal is a
    /// clean image), in the smallest version that holds them.
    ///
    /// - Throws: `ControlError` when the data does not fit a version 40 symbol (2953 bytes at level L).
    public init(bytes: [UInt8]) throws(ControlError) {
        guard let symbol = bytes.withUnsafeBufferPointer({ QRcode_encodeData(Int32($0.count), $0.baseAddress, 0, QR_ECLEVEL_L) }) else {
            throw ControlError("the QR code cannot hold \(bytes.count) bytes (at most 2953); leave out --qr and copy the file instead")
        }
        defer { QRcode_free(symbol) }
        let width = Int(symbol.pointee.width)
        version = Int(symbol.pointee.version)
        self.width = width
        // Bit 0 of each byte is the module's colour (qrencode.h: "1=black/0=white").
        modules = (0..<(width * width)).map { symbol.pointee.data[$0] & 1 == 1 }
    }

    public subscript(row: Int, column: Int) -> Bool {
        guard row >= 0, row < width, column >= 0, column < width else { return false }
        return modules[row * width + column]
    }

    /// The quiet zone around the symbol, in modules (ISO/IEC 18004 asks for 4).
    public static let quietZone = 4

    /// The symbol as text for a terminal with a dark background: light modules (and the quiet zone) are
    /// drawn, dark ones are left blank, with `█`, `▀`, `▄` and space for two module rows per line, as
    /// `qrencode -t UTF8` does.
    public var terminalText: String {
        let side = width + 2 * Self.quietZone
        var lines: [String] = []
        var row = 0
        while row < side {
            var line = ""
            for column in 0..<side {
                let top = !dark(row, column)
                let bottom = row + 1 < side ? !dark(row + 1, column) : false
                switch (top, bottom) {
                case (true, true): line += "█"
                case (true, false): line += "▀"
                case (false, true): line += "▄"
                case (false, false): line += " "
                }
            }
            lines.append(line)
            row += 2
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Whether the module at (row, column) of the symbol with its quiet zone is dark.
    private func dark(_ row: Int, _ column: Int) -> Bool { self[row - Self.quietZone, column - Self.quietZone] }
}
