// Addresses and ports as operators type them for `--endpoint`, `--listen` and `--metrics`:
// `A.B.C.D:PORT`, `[IPV6]:PORT` (RFC 3986 §3.2.2's brackets, so the port cannot be mistaken for the
// address's last group) or `HOST:PORT`, a name resolved with getaddrinfo(3) of either family. Parsing
// (what `validate()` checks) is apart from resolving (which needs the resolver, at start).

import Engine
import Platform
import Transport

/// An address or host name with a port, as typed for an option.
public enum EndpointText: Equatable, Sendable {
    /// A literal IPv4 or bracketed IPv6 address.
    case address(Endpoint)
    /// A host name, resolved by `resolve`.
    case name(String, port: UInt16)

    /// Parses `text`, given to `option` (named in errors with an example of the right form).
    ///
    /// - Parameters:
    ///   - allowsPortZero: whether port 0 (the kernel's pick, for binding) is accepted; a destination needs
    ///     a real port.
    ///   - examplePort: the port errors use in their examples.
    /// - Throws: `ControlError`, one line, for an unbracketed IPv6 address (`--endpoint 2001:db8::1:51820:
    ///   put an IPv6 address in brackets, e.g. --endpoint [2001:db8::1]:51820`), a missing or bad port, or
    ///   a host that is neither an address nor a name.
    public init(_ text: String, option: String, allowsPortZero: Bool, examplePort: UInt16) throws(ControlError) {
        func failure(_ what: String, example: String) -> ControlError {
            ControlError("\(option) \(text): \(what), e.g. \(option) \(example)")
        }
        let ipv6Example = "[2001:db8::1]:\(examplePort)"
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw failure("no ']' after the IPv6 address", example: ipv6Example)
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard IPv6Address(host) != nil else {
                throw failure("'\(host)' is not an IPv6 address", example: ipv6Example)
            }
            guard rest.first == ":" else { throw failure("no port after the address", example: "[\(host)]:\(examplePort)") }
            portText = rest.dropFirst()
        } else if text.filter({ $0 == ":" }).count > 1 {
            // An IPv6 address without brackets: say how to write what it most likely is. A last group of two
            // or more decimal digits after a valid address is read as the port ("2001:db8::1:51820"), else
            // the whole is the address ("::1").
            var example = ipv6Example
            if let colon = text.lastIndex(of: ":"), IPv6Address(text[..<colon]) != nil,
                case let last = text[text.index(after: colon)...], last.count >= 2, let port = UInt16(last), port != 0
            {
                example = "[\(text[..<colon])]:\(port)"
            } else if IPv6Address(text) != nil {
                example = "[\(text)]:\(examplePort)"
            }
            throw failure("put an IPv6 address in brackets", example: example)
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text[...]
            portText = nil
        }
        let shownHost = IPv6Address(host) != nil ? "[\(host)]" : String(host)
        guard !host.isEmpty else {
            throw failure("no host", example: allowsPortZero ? "[::]:\(examplePort)" : "vpn.example.org:\(examplePort)")
        }
        guard let portText else { throw failure("no port", example: "\(shownHost):\(examplePort)") }
        guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = UInt16(portText) else {
            throw failure("'\(portText)' is not a port (1 to 65535)", example: "\(shownHost):\(examplePort)")
        }
        guard port != 0 || allowsPortZero else {
            throw failure("port 0 cannot be sent to", example: "\(shownHost):\(examplePort)")
        }
        if let v6 = IPv6Address(host) {
            self = .address(Endpoint(address: v6, port: port))
        } else if let v4 = IPv4Address(host) {
            self = .address(Endpoint(address: v4, port: port))
        } else if Self.isHostName(host) {
            self = .name(String(host), port: port)
        } else {
            throw failure(
                "'\(host)' is neither an IPv4 address, a bracketed IPv6 address nor a host name",
                example: "vpn.example.org:\(examplePort)")
        }
    }

    /// Letters, digits, '-', '_' and '.', not starting with '-' (RFC 1123 §2.1 names, plus the '_' some
    /// local names carry), at most 253 characters.
    static func isHostName(_ host: Substring) -> Bool {
        guard host.count <= 253, host.first != "-", host.first != "." else { return false }
        return host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }
    }

    /// The endpoint: an address as it is, a name resolved with getaddrinfo(3) (AF_UNSPEC, its first
    /// answer, which glibc orders by RFC 6724). For a name, `note` says which address and family were
    /// picked and what else the name had, for the log.
    ///
    /// - Throws: `ControlError` naming the option and the name when it does not resolve.
    public func resolve(option: String) throws(ControlError) -> (endpoint: Endpoint, note: String?) {
        switch self {
        case .address(let endpoint):
            return (endpoint, nil)
        case .name(let host, let port):
            let addresses: [IPAddress]
            do { addresses = try UDPSocket.addresses(of: host) } catch {
                throw ControlError("\(option) \(host):\(port): cannot resolve '\(host)': \(error)")
            }
            let endpoint = Endpoint(address: addresses[0], port: port)
            return (endpoint, Self.resolutionNote(option: option, name: host, picked: endpoint, addresses: addresses))
        }
    }

    /// `endpoint vpn.example.org is [2001:db8::1]:51820 (IPv6; it also has 1 IPv4 address)`: the address
    /// `picked` for `name` among all of its `addresses` (the picked one included).
    public static func resolutionNote(option: String, name: String, picked: Endpoint, addresses: [IPAddress]) -> String {
        func family(_ a: IPAddress) -> String { a.isIPv6 ? "IPv6" : "IPv4" }
        func count(_ n: Int, _ what: String) -> String { "\(n) \(what) address\(n == 1 ? "" : "es")" }
        let others = addresses.filter { $0 != picked.address }
        let sameFamily = others.filter { $0.isIPv6 == picked.address.isIPv6 }.count
        let otherFamily = others.count - sameFamily
        var also: [String] = []
        if sameFamily > 0 { also.append(count(sameFamily, "other " + family(picked.address))) }
        if otherFamily > 0 { also.append(count(otherFamily, picked.address.isIPv6 ? "IPv4" : "IPv6")) }
        let subject = option.hasPrefix("--") ? String(option.dropFirst(2)) : option
        let detail = also.isEmpty ? family(picked.address) : "\(family(picked.address)); it also has \(also.joined(separator: " and "))"
        return "\(subject) \(name) is \(picked) (\(detail))"
    }
}

/// Parses and resolves `text` given to `option` as a destination (`HOST:PORT`, `A.B.C.D:PORT`,
/// `[IPV6]:PORT`; port 0 refused).
///
/// - Throws: `ControlError` as `EndpointText.init` and `EndpointText.resolve`.
public func resolveEndpoint(_ text: String, option: String) throws(ControlError) -> Endpoint {
    try EndpointText(text, option: option, allowsPortZero: false, examplePort: 51820).resolve(option: option).endpoint
}
