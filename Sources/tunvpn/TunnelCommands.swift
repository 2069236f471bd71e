// `tunvpn server`, `tunvpn client` and `tunvpn reload`: their flags, checked and turned into Control's
// settings (`ServerConfiguration`, `ClientConfiguration`), which `ServerDaemon` and `ClientDaemon` run.

import ArgumentParser
import Control
import Crypto
import Logging
import Platform
import Transport

/// Options both commands share.
struct CommonOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The wire protocol: tunvpn (this project's own, with pushed addresses) or wireguard (WireGuard's exactly, for stock WireGuard peers; docs/PROTOCOL.md, \"WireGuard mode\").",
            valueName: "NAME"))
    var `protocol`: String = ProtocolMode.tunvpn.rawValue

    @Option(help: ArgumentHelp("TUN device name (a pre-created persistent device is used as it is).", valueName: "NAME"))
    var dev: String = "tun0"

    // `.unconditional`: `--mtu -5` takes -5 as the value (and gets the range error) instead of reading it
    // as an option and reporting a missing value.
    @Option(parsing: .unconditional, help: ArgumentHelp("Tunnel MTU, 576 to 9000 (IPv6 in the tunnel needs 1280 or more).", valueName: "BYTES"))
    var mtu: Int = 1420

    @Option(help: ArgumentHelp("File with a 32-byte pre-shared key (base64), mixed into the handshake as WireGuard's psk.", valueName: "FILE"))
    var psk: String?

    @Option(help: ArgumentHelp("Cipher suite to allow, repeatable, in preference order.", valueName: "NAME"))
    var suite: [String] = []

    @Option(
        help: ArgumentHelp(
            "Who computes the per-packet AEAD: auto (OpenSSL's libcrypto when present and its self-test against libsodium passes, else libsodium), libsodium or openssl. The frames are the same bytes either way.",
            valueName: "PROVIDER"))
    var cryptoProvider: String = "auto"

    @Option(help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error or critical.", valueName: "LEVEL"))
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("Testing only: multiply every protocol timer by this factor.", visibility: .hidden))
    var timerScale: Double = 1

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Testing only: shift the wall clock used for handshake timestamps by SECONDS.", visibility: .hidden))
    var clockOffset: Int64 = 0

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Packets the kernel queues on the TUN device for tunvpn before it drops, 16 to 100000 (the kernel's default is 500).",
            valueName: "PACKETS"))
    var txqueuelen: Int = 1000

    @Flag(help: "Do not use TUN segmentation offloads (IFF_VNET_HDR with TSO and USO) or UDP GSO/GRO, even where the kernel has them.")
    var noOffload = false

    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://ADDR:PORT/metrics (127.0.0.1:9586, [::1]:9586 or HOST:PORT).",
            valueName: "ADDR:PORT"))
    var metrics: String?

    @Option(
        help: ArgumentHelp(
            "The user to run as once setup is done, with CAP_NET_ADMIN alone (default: tunvpn if that user exists, else nobody; root keeps uid 0 and is not recommended).",
            valueName: "NAME"))
    var user: String?

    /// The mode `--protocol` names (validated by `validateCommon`).
    var protocolMode: ProtocolMode { ProtocolMode(rawValue: `protocol`) ?? .tunvpn }

    func validateCommon() throws {
        guard ProtocolMode(rawValue: `protocol`) != nil else {
            let modes = ProtocolMode.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("unknown --protocol '\(`protocol`)': give one of \(modes), e.g. --protocol wireguard")
        }
        // WireGuard's transport data is ChaCha20-Poly1305 and nothing else (no suite negotiation).
        if protocolMode == .wireguard, let other = suite.first(where: { $0 != ChaCha20Poly1305.name }) {
            throw ValidationError(
                "--suite \(other) cannot be used with --protocol wireguard: WireGuard's frames are chacha20poly1305 only; drop --suite or give --suite chacha20poly1305")
        }
        try validateInterfaceName(dev, option: "--dev")
        guard (576...9000).contains(mtu) else {
            throw ValidationError("--mtu \(mtu) is out of range: give 576 to 9000 bytes (1280 or more for IPv6), e.g. --mtu 1420")
        }
        guard (16...100_000).contains(txqueuelen) else {
            throw ValidationError("--txqueuelen \(txqueuelen) is out of range: give 16 to 100000 packets, e.g. --txqueuelen 1000")
        }
        for name in suite where CipherSuites.named(name) == nil {
            let known = CipherSuites.all.map { $0.name }.joined(separator: ", ")
            throw ValidationError("unknown suite '\(name)' (known: \(known))")
        }
        guard AEADProviderChoice(rawValue: cryptoProvider) != nil else {
            throw ValidationError("unknown --crypto-provider '\(cryptoProvider)': give one of auto, libsodium, openssl, e.g. --crypto-provider openssl")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("unknown --log-level '\(logLevel)': give one of \(levels), e.g. --log-level debug")
        }
        guard timerScale > 0 && timerScale <= 1 else { throw ValidationError("--timer-scale must be in (0, 1]") }
        if let metrics { try validateEndpointText(metrics, option: "--metrics", allowsPortZero: true, examplePort: 9586) }
        if let user, Privileges.Account.named(user) == nil {
            throw ValidationError(
                "--user '\(user)': no such user; create it (adduser --system --group --no-create-home \(user)) or name an existing one")
        }
    }

    /// The settings these options and `host` give.
    func settings(_ host: HostOptions) -> TunnelSettings {
        var t = TunnelSettings()
        t.device = dev
        t.mtu = mtu
        t.pskFile = psk
        t.suites = suite
        t.cryptoProvider = AEADProviderChoice(rawValue: cryptoProvider) ?? .auto
        t.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        t.timerScale = timerScale
        t.clockOffset = clockOffset
        t.transmitQueueLength = txqueuelen
        t.offload = !noOffload
        t.metrics = metrics
        t.user = user
        t.dryRun = host.dryRun
        t.firewall = host.firewall
        t.protocolMode = protocolMode
        return t
    }
}

struct Server: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accept clients, decrypt their packets into a TUN device, and send replies back encrypted.",
        discussion: """
            The allow-list (--clients) holds one client public key per line, optionally followed by fixed \
            tunnel addresses (one IPv4, one IPv6, either order) and a # comment; what a line does not fix \
            comes from the --address prefixes. With --protocol wireguard (stock WireGuard clients) \
            nothing is pushed and there is no pool: every line gives the peer's addresses.

            Examples:
              tunvpn server --key keys/server.key --clients keys/clients
              tunvpn server --listen [::]:51820 --address 10.8.0.1/16
              tunvpn server --address 10.8.0.1/16 --address fd00:8::1/64
              tunvpn server --key keys/server.key --allow-any-client   # lab use only
              tunvpn server --config /etc/tunvpn/server.toml --mtu 1380
              tunvpn server --protocol wireguard --address 10.8.0.1/24 --clients peers
            """)

    @Option(help: ArgumentHelp("The server's private key file.", valueName: "FILE"))
    var key: String = "keys/server.key"

    @Option(
        help: ArgumentHelp(
            "UDP address and port to listen on; [::] serves IPv4 and IPv6 clients on one socket (0.0.0.0 if the host has no IPv6), [V6ADDR] IPv6 only, an IPv4 address IPv4 only.",
            valueName: "ADDR:PORT"))
    var listen: String = "[::]:51820"

    @Option(
        help: ArgumentHelp(
            "The server's tunnel address and the tunnel prefix, repeatable: one IPv4 (default 10.8.0.1/16) and at most one IPv6, /64 to /120 (default a unique local /64 derived from the server's key).",
            valueName: "PREFIX"))
    var address: [String] = []

    @Flag(name: .customLong("no-ipv6"), help: "Carry no IPv6 in the tunnel, and change nothing on this host for IPv6 (no forwarding or NAT).")
    var noIPv6 = false

    @Option(help: ArgumentHelp("Allow-list file: one client public key per line, optional address and # comment.", valueName: "FILE"))
    var clients: String = "keys/clients"

    @Flag(help: "Admit any client key (lab use; logs a warning).")
    var allowAnyClient = false

    @Option(
        help: ArgumentHelp(
            "Read the peers from this PostgreSQL database instead of --clients, and follow its changes live (a libpq URL without a password, e.g. postgresql://tunvpn@db.example.net/tunvpn).",
            valueName: "URL"))
    var registry: String?

    @Option(
        help: ArgumentHelp(
            "File whose first line is the registry's password (mode 0600); without it, libpq's PGPASSWORD or ~/.pgpass.",
            valueName: "FILE"))
    var registryPasswordFile: String?

    @Option(
        help: ArgumentHelp(
            "Directory for the registry's local cache file, used at a start while the database is down.", valueName: "DIR"))
    var registryCache: String = "/var/lib/tunvpn/registry"

    @Option(help: ArgumentHelp("Interface to MASQUERADE tunnel traffic out of (default: the default route's).", valueName: "IF"))
    var egress: String?

    @Flag(help: "Do not enable forwarding or NAT (the operator handles it).")
    var noNat = false

    @Option(
        help: ArgumentHelp(
            "A resolver clients use while connected, repeatable (IPv4 or IPv6, at most 4), normally one they reach through the tunnel, such as the server's tunnel address.",
            valueName: "ADDR"))
    var dns: [String] = []

    @Option(
        help: ArgumentHelp(
            "A search domain clients use while connected, repeatable (62 bytes at most together, with one space between domains).",
            valueName: "DOMAIN"))
    var dnsSearch: [String] = []

    @OptionGroup var common: CommonOptions
    @OptionGroup var host: HostOptions
    @OptionGroup var configFile: ConfigFileOption

    func validate() throws {
        try common.validateCommon()
        let (_, address6) = try tunnelAddresses()
        if let address6, noIPv6 {
            throw ValidationError("--address \(address6) and --no-ipv6 cannot be combined: drop one (e.g. --address 10.8.0.1/16 --no-ipv6)")
        }
        if let address6, common.mtu < 1280 {
            throw ValidationError("--address \(address6) needs --mtu 1280 or more (IPv6's minimum link MTU), or use --no-ipv6; e.g. --mtu 1420")
        }
        try validateEndpointText(listen, option: "--listen", allowsPortZero: true, examplePort: 51820)
        if let egress { try validateInterfaceName(egress, option: "--egress") }
        _ = try pushedDNS()
        if common.protocolMode == .wireguard { try validateWireGuardMode() }
        if let registry {
            do { _ = try RegistryURL(registry) } catch { throw ValidationError(error.message) }
        }
        if registryPasswordFile != nil && registry == nil {
            throw ValidationError("--registry-password-file needs --registry URL, e.g. --registry postgresql://tunvpn@db.example.net/tunvpn")
        }
    }

    /// What WireGuard mode refuses: it pushes nothing and has no pool, so every peer is a listed key with
    /// its own addresses (docs/PROTOCOL.md, "WireGuard mode").
    func validateWireGuardMode() throws {
        if allowAnyClient {
            throw ValidationError(
                "--allow-any-client cannot be used with --protocol wireguard: each peer's allowed IPs come from its allow-list line; list it in --clients, e.g. KEY 10.8.0.5/32 # laptop")
        }
        for (option, given) in [("--dns", !dns.isEmpty), ("--dns-search", !dnsSearch.isEmpty)] where given {
            throw ValidationError(
                "\(option) cannot be used with --protocol wireguard: nothing is pushed in WireGuard mode; put DNS in the client's config (e.g. tunvpn add-client laptop --dns 10.8.0.1)")
        }
    }

    /// The DNS settings of --dns and --dns-search, checked as the protocol and the clients check them.
    func pushedDNS() throws -> DNSSettings {
        DNSSettings(resolvers: try dnsResolvers(dns, option: "--dns"), searchDomains: try dnsSearchDomains(dnsSearch))
    }

    /// The IPv4 and IPv6 prefixes of `--address` (the IPv4 default when none is given).
    ///
    /// - Throws: `ValidationError` for a prefix of neither family, an IPv4 prefix narrower than /30, an IPv6
    ///   one outside /64…/120 or of a special-use range, or two prefixes of one family.
    func tunnelAddresses() throws -> (IPv4Prefix, IPv6Prefix?) {
        var v4: IPv4Prefix? = nil
        var v6: IPv6Prefix? = nil
        let both = "give one IPv4 and at most one IPv6 prefix, e.g. --address 10.8.0.1/16 --address fd00:8::1/64"
        for text in address {
            if let p = IPv4Prefix(text), text.contains("/") {
                guard p.length <= 30 else {
                    throw ValidationError("--address '\(text)' must be an IPv4 address with a prefix of /30 or wider, like 10.8.0.1/16")
                }
                guard p.address != p.network, p.address != p.broadcast else {
                    throw ValidationError(
                        "--address '\(text)' is the prefix's own \(p.address == p.network ? "network" : "broadcast") address; give the server a host address in it, like \(IPv4Address(p.network.value + 1))/\(p.length)")
                }
                if let v4 { throw ValidationError("--address given two IPv4 prefixes, \(v4) and \(p): \(both)") }
                v4 = p
            } else if let p = IPv6Prefix(text), text.contains("/") {
                guard (64...120).contains(p.length) else {
                    throw ValidationError("--address '\(text)' must be an IPv6 address with a prefix of /64 to /120, like fd00:8::1/64")
                }
                let top = p.address.high >> 48
                if top & 0xff00 == 0 || top & 0xffc0 == 0xfe80 || top & 0xff00 == 0xff00 {
                    throw ValidationError(
                        "--address '\(text)' is in ::/8, link-local fe80::/10 or multicast ff00::/8; use a unique local or global prefix, like fd00:8::1/64")
                }
                guard p.address != p.network else {
                    throw ValidationError("--address '\(text)' is the prefix's own network address; give the server a host address in it, like \(p.network.advanced(by: 1))/\(p.length)")
                }
                if let v6 { throw ValidationError("--address given two IPv6 prefixes, \(v6) and \(p): \(both)") }
                v6 = p
            } else {
                throw ValidationError("--address '\(text)' is not an address with a prefix length: use e.g. --address 10.8.0.1/16 or --address fd00:8::1/64")
            }
        }
        return (v4 ?? IPv4Prefix(address: IPv4Address(10, 8, 0, 1), length: 16), v6)
    }

    func run() throws {
        guard let (prefix, prefix6) = try? tunnelAddresses() else { preconditionFailure("validate() checked --address") }
        var c = ServerConfiguration(address: prefix)
        c.address6 = prefix6
        c.noIPv6 = noIPv6
        c.tunnel = common.settings(host)
        c.keyFile = key
        c.clientsFile = clients
        c.allowAnyClient = allowAnyClient
        c.egress = egress
        c.noNAT = noNat
        c.dns = (try? pushedDNS()) ?? .none
        c.registry = registry.flatMap { try? RegistryURL($0) }
        c.registryPasswordFile = registryPasswordFile
        c.registryCacheDirectory = registryCache
        try reportingErrors {
            // A name is resolved here, at start; the daemon binds the address (and logs the fallback).
            let (endpoint, resolution) = try EndpointText(listen, option: "--listen", allowsPortZero: true, examplePort: 51820)
                .resolve(option: "--listen")
            if let resolution { printLine(resolution) }
            c.listen = endpoint
            try ServerDaemon.run(c)
        }
    }
}

struct Client: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to a server and carry this host's packets through the tunnel.",
        discussion: """
            The client's own key defaults to keys/client.key; its public key (keys/client.pub) must be on \
            the server's allow-list. The tunnel address comes from the server. --peer-key and --endpoint \
            are required unless the --config file gives them. With --protocol wireguard (a WireGuard \
            server) nothing is pushed: --address gives the tunnel address and --dns the resolvers.

            Examples:
              tunvpn client --peer-key keys/server.pub --endpoint vpn.example.com:51820
              tunvpn client --peer-key keys/server.pub --endpoint 203.0.113.7:51820
              tunvpn client --peer-key keys/server.pub --endpoint [2001:db8::7]:51820
              tunvpn client --config /etc/tunvpn/client.toml --route 10.8.0.0/16
              tunvpn client --peer-key s.pub --endpoint vpn1:51820 --endpoint vpn2:51820
              tunvpn client --protocol wireguard --address 10.8.0.2/24 --config wg.toml
            """)

    @Option(help: ArgumentHelp("The server's public key file.", valueName: "FILE"))
    var peerKey: String?

    @Option(help: ArgumentHelp("The server's public key itself (base64), instead of --peer-key.", valueName: "KEY"))
    var peerPublicKey: String?

    @Option(help: ArgumentHelp("This client's private key itself (base64), instead of --key; only in a --config TOML, never on the command line.", valueName: "KEY"))
    var privateKey: String?

    @Option(help: ArgumentHelp("The pre-shared key itself (base64), instead of --psk; only in a --config TOML, never on the command line.", valueName: "KEY"))
    var presharedKey: String?

    @Option(
        help: ArgumentHelp(
            "The server's UDP endpoint: HOST:PORT (a name's first address, IPv6 or IPv4), A.B.C.D:PORT or [IPV6]:PORT. Repeatable: servers sharing one key, tried in order; names are resolved again at each handshake attempt, and the first is returned to when it answers again.",
            valueName: "HOST:PORT"))
    var endpoint: [String] = []

    @Option(
        help: ArgumentHelp(
            "With several --endpoint: seconds of failed handshake attempts before the next endpoint is tried (1 to 3600).",
            valueName: "SECONDS"))
    var failoverAfter: UInt64 = FailoverSettings.standard.failoverAfter / 1_000_000_000

    @Option(help: ArgumentHelp("This client's private key file.", valueName: "FILE"))
    var key: String = "keys/client.key"

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Send a keepalive at least this often, 1 to 65535 seconds, for clients behind NAT.", valueName: "SECONDS"))
    var keepalive: UInt64?

    @Option(help: ArgumentHelp("Route only this IPv4 or IPv6 network through the tunnel (repeatable; split tunnel).", valueName: "CIDR"))
    var route: [String] = []

    @Option(
        help: ArgumentHelp(
            "--protocol wireguard only, and required there: this client's tunnel address and prefix (wg-quick's Address), repeatable: one IPv4 and at most one IPv6, e.g. 10.8.0.2/24.",
            valueName: "PREFIX"))
    var address: [String] = []

    @Flag(
        name: .customLong("no-ipv6"),
        help: "Put no IPv6 address on the device and answer every IPv6 packet routed into it with an ICMPv6 unreachable (the full tunnel still takes all of IPv6, so nothing leaks).")
    var noIPv6 = false

    @Flag(help: "Add no routes (the operator routes traffic into the tunnel).")
    var noRoutes = false

    @Flag(help: "Gateway mode: forward and MASQUERADE traffic from other LAN hosts into the tunnel.")
    var gateway = false

    @Flag(help: "Kill switch: block all IPv4 and IPv6 traffic outside the tunnel while the client runs, and after a crash until `tunvpn down` or the next start with --lockdown, which replaces it without a gap.")
    var lockdown = false

    @Option(
        help: ArgumentHelp(
            "Use this resolver instead of the ones the server pushes, repeatable (IPv4 or IPv6, at most 4); the pushed search domains stay.",
            valueName: "ADDR"))
    var dns: [String] = []

    @Flag(help: "Apply none of the DNS settings the server pushes (leave this host's resolver configuration alone).")
    var noDns = false

    @OptionGroup var common: CommonOptions
    @OptionGroup var host: HostOptions
    @OptionGroup var configFile: ConfigFileOption

    func validate() throws {
        try common.validateCommon()
        try validateInlineKeys(CommandLine.arguments)
        guard !endpoint.isEmpty else {
            throw ValidationError("Missing expected argument '--endpoint <HOST:PORT>', e.g. --endpoint vpn.example.org:51820")
        }
        for e in endpoint { try validateEndpointText(e, option: "--endpoint", allowsPortZero: false, examplePort: 51820) }
        if !(1...3600).contains(failoverAfter) {
            throw ValidationError("--failover-after \(failoverAfter) is out of range: give 1 to 3600 seconds, e.g. --failover-after 15")
        }
        if let k = keepalive, !(1...65535).contains(k) {
            throw ValidationError("--keepalive \(k) is out of range: give 1 to 65535 seconds, e.g. --keepalive 25")
        }
        for r in route where !r.contains("/") || (IPv4Prefix(r) == nil && IPv6Prefix(r) == nil) {
            throw ValidationError("--route '\(r)' is not a network with a prefix length, like 10.0.0.0/8 or 2001:db8::/32")
        }
        if noRoutes && !route.isEmpty { throw ValidationError("--route and --no-routes cannot be combined") }
        if let r = route.first(where: { IPv4Prefix($0) == nil }), common.mtu < 1280 {
            throw ValidationError("--route \(r) needs --mtu 1280 or more (IPv6's minimum link MTU); e.g. --mtu 1420")
        }
        _ = try dnsResolvers(dns, option: "--dns")
        if noDns && !dns.isEmpty {
            throw ValidationError("--dns and --no-dns cannot be combined: drop one (e.g. --dns 10.8.0.1, or --no-dns alone)")
        }
        _ = try ownAddresses()
    }

    /// This client's own tunnel addresses (`--address`): nil in tunvpn mode, where the server assigns them.
    ///
    /// - Throws: `ValidationError` for --address in tunvpn mode, none in WireGuard mode, a value that is no
    ///   prefix or is of a special-use range, no IPv4 or two of one family, or an IPv6 one with --no-ipv6 or
    ///   an MTU below 1280.
    func ownAddresses() throws -> (IPv4Prefix, IPv6Prefix?)? {
        guard common.protocolMode == .wireguard else {
            if let first = address.first {
                throw ValidationError(
                    "--address \(first) cannot be used with --protocol tunvpn: the server assigns addresses in tunvpn mode; drop --address, or add --protocol wireguard for a WireGuard server")
            }
            return nil
        }
        let example = "e.g. --address 10.8.0.2/24 --address fd00:8::2/64"
        var v4: IPv4Prefix? = nil
        var v6: IPv6Prefix? = nil
        for text in address {
            if let p = IPv4Prefix(text), text.contains("/") {
                guard p.length >= 8 else { throw ValidationError("--address '\(text)' is wider than /8; give this client's address with the tunnel's prefix, \(example)") }
                let top = p.address.value >> 24
                if top == 0 || top == 127 || top >= 224 || p.address.value >> 16 == 0xa9fe {
                    throw ValidationError("--address '\(text)' is in 0.0.0.0/8, loopback, link-local, multicast or reserved space; \(example)")
                }
                if p.length <= 30 && (p.address == p.network || p.address == p.broadcast) {
                    throw ValidationError("--address '\(text)' is the prefix's network or broadcast address; give this client's host address, \(example)")
                }
                if let v4 { throw ValidationError("--address given two IPv4 prefixes, \(v4) and \(p): give one IPv4 and at most one IPv6, \(example)") }
                v4 = p
            } else if let p = IPv6Prefix(text), text.contains("/") {
                let top = p.address.high >> 48
                if top & 0xff00 == 0 || top & 0xffc0 == 0xfe80 || top & 0xff00 == 0xff00 {
                    throw ValidationError("--address '\(text)' is in ::/8, link-local fe80::/10 or multicast ff00::/8; \(example)")
                }
                if let v6 { throw ValidationError("--address given two IPv6 prefixes, \(v6) and \(p): give one IPv4 and at most one IPv6, \(example)") }
                if noIPv6 { throw ValidationError("--address \(text) and --no-ipv6 cannot be combined: drop one, \(example)") }
                if common.mtu < 1280 {
                    throw ValidationError("--address \(text) needs --mtu 1280 or more (IPv6's minimum link MTU), or drop it; e.g. --mtu 1420")
                }
                v6 = p
            } else {
                throw ValidationError("--address '\(text)' is not an address with a prefix length: \(example)")
            }
        }
        guard let v4 else {
            let what = address.isEmpty ? "Missing --address" : "--address gives no IPv4 prefix"
            throw ValidationError(
                "\(what): --protocol wireguard needs this client's own tunnel address (a WireGuard server pushes none; wg-quick's Address), \(example)")
        }
        return (v4, v6)
    }

    /// The inline keys (`peer-public-key`, `private-key`, `preshared-key`, written by `tunvpn add-client`):
    /// each decodes, replaces the file option of its kind, and the two secrets come from a config file only,
    /// never from `commandLine` (the process's own arguments), where other users could read them in ps(1).
    func validateInlineKeys(_ commandLine: [String]) throws {
        for (option, value) in [("--private-key", privateKey), ("--preshared-key", presharedKey)] where value != nil {
            if commandLine.contains(where: { $0 == option || $0.hasPrefix(option + "=") }) {
                throw ValidationError(
                    "\(option) is read from a config file only (a command line is visible in ps); put it in the file, e.g. tunvpn client --config laptop.toml")
            }
        }
        switch (peerKey, peerPublicKey) {
        case (nil, nil):
            throw ValidationError("Missing expected argument '--peer-key <peer-key>' (the server's public key file, e.g. --peer-key keys/server.pub)")
        case (.some, .some):
            throw ValidationError("--peer-key and --peer-public-key cannot be combined: give the server's key once")
        default: break
        }
        if let peerPublicKey, (try? PublicKey(base64: peerPublicKey)) == nil {
            throw ValidationError("--peer-public-key is not a base64 X25519 public key (44 characters), e.g. the text of keys/server.pub")
        }
        if let privateKey, (try? PrivateKey(base64: privateKey)) == nil {
            throw ValidationError("private-key is not a base64 private key (44 characters), like the text tunvpn keygen writes")
        }
        if let presharedKey, (try? PrivateKey(base64: presharedKey)) == nil {
            throw ValidationError("preshared-key is not a base64 32-byte key (44 characters), like tunvpn genpsk prints")
        }
        if presharedKey != nil && common.psk != nil {
            throw ValidationError("preshared-key and --psk cannot be combined: give the pre-shared key once")
        }
    }

    func run() throws {
        var c = ClientConfiguration(peerKeyFile: peerKey ?? "", endpoint: endpoint[0])
        c.endpoints = endpoint
        c.failoverAfter = failoverAfter
        c.peerKey = peerPublicKey.flatMap { try? PublicKey(base64: $0) }
        c.privateKey = privateKey.flatMap { try? PrivateKey(base64: $0) }
        c.tunnel = common.settings(host)
        c.tunnel.psk = presharedKey.flatMap { try? PrivateKey(base64: $0) }
        c.keyFile = key
        c.keepalive = keepalive
        c.routes = noRoutes ? nil : route.compactMap { IPv4Prefix($0) }
        c.routes6 = noRoutes ? [] : route.compactMap { IPv4Prefix($0) == nil ? IPv6Prefix($0) : nil }
        c.noIPv6 = noIPv6
        c.gateway = gateway
        c.lockdown = lockdown
        c.noDNS = noDns
        c.dns = (try? dnsResolvers(dns, option: "--dns")) ?? []
        if let own = try? ownAddresses() {
            c.address = own.0
            c.address6 = own.1
        }
        try reportingErrors { try ClientDaemon.run(c) }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a running server re-read its allow-list, and print what changed.",
        discussion: """
            Clients added to the file can connect at once; clients removed lose their sessions; everyone \
            else keeps theirs. If the file is wrong the server keeps its current list, and this exits 1 with \
            the reason. Run it in the network namespace of the server; without --dev it finds the server. \
            SIGHUP does the same, with the outcome in the server's log only.

            Example:
              echo "$(cat laptop.pub) 10.8.0.9  # laptop" >> keys/clients
              tunvpn reload
            """)

    @Option(help: ArgumentHelp("TUN device name of the server instance (default: the only one in this network namespace).", valueName: "NAME"))
    var dev: String?

    @Option(help: ArgumentHelp("The server instance run by this process id (systemd's $MAINPID), instead of --dev.", valueName: "PID"))
    var pid: Int32?

    func validate() throws {
        if let dev { try validateInterfaceName(dev, option: "--dev") }
        if dev != nil && pid != nil { throw ValidationError("--dev and --pid cannot be combined; pass one") }
    }

    func run() throws {
        try reportingErrors { print(try InstanceRequests.reload(device: dev, pid: pid)) }
    }
}

/// The resolvers of a repeatable `option` (the server's or the client's --dns): addresses a client can use
/// as resolvers (`DNSSettings.resolverProblem`), at most `WireFormat.maxDNSResolvers`.
///
/// - Throws: `ValidationError` naming the option and the value, with an example.
func dnsResolvers(_ texts: [String], option: String) throws -> [IPAddress] {
    let example = "e.g. \(option) 10.8.0.1 \(option) fd00:8::1"
    guard texts.count <= WireFormat.maxDNSResolvers else {
        throw ValidationError("\(option) given \(texts.count) times: at most \(WireFormat.maxDNSResolvers) resolvers fit in the protocol, \(example)")
    }
    return try texts.map { text in
        guard let address = IPAddress(text) else {
            throw ValidationError("\(option) '\(text)' is not an IPv4 or IPv6 address, \(example)")
        }
        if let problem = DNSSettings.resolverProblem(address) {
            throw ValidationError("\(option) \(text): \(problem), which names no resolver a client can use through the tunnel; \(example)")
        }
        return address.unmapped
    }
}

/// The domains of --dns-search (a trailing dot dropped), each a valid domain name, together at most
/// `WireFormat.maxDNSSearchLength` bytes as the protocol sends them.
///
/// - Throws: `ValidationError` naming the option and the value, with an example.
func dnsSearchDomains(_ texts: [String]) throws -> [String] {
    let example = "e.g. --dns-search corp.example"
    let domains = try texts.map { text in
        let domain = text.hasSuffix(".") && text.count > 1 ? String(text.dropLast()) : text
        if let problem = DNSSettings.domainProblem(domain) {
            throw ValidationError("--dns-search '\(text)': \(problem); give a domain name, \(example)")
        }
        return domain
    }
    let length = domains.joined(separator: " ").utf8.count
    guard length <= WireFormat.maxDNSSearchLength else {
        throw ValidationError(
            "--dns-search: the domains take \(length) bytes as sent (one space between them), more than the protocol's \(WireFormat.maxDNSSearchLength); give fewer or shorter ones, \(example)")
    }
    return domains
}

/// Checks the form of an address-and-port option (`EndpointText`) without resolving a name.
func validateEndpointText(_ text: String, option: String, allowsPortZero: Bool, examplePort: UInt16) throws {
    do { _ = try EndpointText(text, option: option, allowsPortZero: allowsPortZero, examplePort: examplePort) } catch {
        throw ValidationError(error.message)
    }
}
