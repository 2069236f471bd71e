// `tunvpn add-client`, `tunvpn remove-client` and `tunvpn genpsk`: the server's allow-list edited on the
// server host, with a ready client config (Sources/Control/Provisioning.swift holds the logic).

import ArgumentParser
import Control
import Crypto
import Glibc
import Platform
import Transport

/// A command whose `--config` names the server's config file, not its own: ConfigFile.expand leaves it alone.
protocol ReadsServerConfig {}

/// Where the server's allow-list, key, prefixes and psk come from: its config file and the server's own flags.
struct ServerSideOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The server's TOML config file (as tunvpn server --config takes it).", valueName: "FILE"))
    var config: String?

    @Option(help: ArgumentHelp("The server's private key file (default: the server's, keys/server.key).", valueName: "FILE"))
    var key: String?

    @Option(help: ArgumentHelp("The server's allow-list file (default: the server's, keys/clients).", valueName: "FILE"))
    var clients: String?

    @Option(help: ArgumentHelp("TUN device of the running server to reload (default: the only instance in this network namespace).", valueName: "DEV"))
    var dev: String?

    @Option(
        help: ArgumentHelp(
            "The peer registry (PostgreSQL, as tunvpn server --registry): the client is added there, for every server, instead of to the allow-list (default: the server config's registry).",
            valueName: "URL"))
    var registry: String?

    @Option(
        help: ArgumentHelp("File whose first line is the registry's password (default: the server config's).", valueName: "FILE"))
    var registryPasswordFile: String?

    /// The server command the config file and these flags give (defaults and checks as `tunvpn server`).
    func server(prefixes: [String], noIPv6: Bool, protocolName: String? = nil) throws -> Server {
        var file: [ConfigFile.Setting] = []
        if let config {
            let bytes: [UInt8]
            do { bytes = try KeyFiles.readConfigurationFile(config, what: "config file") } catch {
                throw ConfigFileError(file: config, line: nil, key: nil, problem: error.problem)
            }
            file = try ConfigFile.settings(fromTOML: String(decoding: bytes, as: UTF8.self), file: config, for: ConfigSchema(Server.self))
        }
        var user: [String] = []
        if let key { user.append("--key=" + key) }
        if let clients { user.append("--clients=" + clients) }
        if let registry { user.append("--registry=" + registry) }
        if let registryPasswordFile { user.append("--registry-password-file=" + registryPasswordFile) }
        user += prefixes.map { "--address=" + $0 }
        if noIPv6 { user.append("--no-ipv6") }
        if let protocolName { user.append("--protocol=" + protocolName) }
        do { return try Server.parse(ConfigFile.merge(file: file, user: user)) } catch {
            throw ControlError("the server's settings\(config.map { " (\($0))" } ?? ""): \(Server.message(for: error))")
        }
    }
}

struct AddClient: ParsableCommand, ReadsServerConfig {
    static let configuration = CommandConfiguration(
        commandName: "add-client",
        abstract: "Add a client to the server's allow-list, reload the server, and write the client's config.",
        discussion: """
            Run on the server host. Writes NAME.key, NAME.pub and NAME.toml (0600)
            into --out, appends `KEY ADDR4 [ADDR6]  # NAME` with the next free
            addresses to the allow-list, and makes a running server reload it.
            On the client: tunvpn client --config NAME.toml.
            --address with a prefix length is the server's (as tunvpn server
            takes it); without one it is the client's address.
            In WireGuard mode (--protocol wireguard, or protocol = "wireguard"
            in the server's config) it writes NAME.conf, a wg-quick file for a
            stock WireGuard client, and NAME.pub instead.

            Examples:
              tunvpn add-client laptop --config server.toml --endpoint vpn.example.com
              tunvpn add-client phone --endpoint vpn.example.com:51820 --inline-key --qr
              tunvpn add-client desk --public-key "$(cat desk.pub)" --address 10.8.0.20
              tunvpn add-client phone --protocol wireguard --endpoint vpn.example.com --qr
            """)

    @Argument(help: ArgumentHelp("The client's name: one word of letters, digits, '-', '_' and '.'.", valueName: "NAME"))
    var name: String

    @OptionGroup var server: ServerSideOptions

    @Option(
        help: ArgumentHelp(
            "The server's prefix (with a length, as tunvpn server takes it) or the client's address (without one), repeatable.",
            valueName: "ADDR"))
    var address: [String] = []

    @Flag(name: .customLong("no-ipv6"), help: "The server carries no IPv6 (as tunvpn server --no-ipv6): no IPv6 address for the client.")
    var noIPv6 = false

    @Option(help: ArgumentHelp("The server's pre-shared key file, when it uses one (default: the server config's psk).", valueName: "FILE"))
    var psk: String?

    @Option(help: ArgumentHelp("The client's public key (base64), for a key made on the client, instead of a new key pair.", valueName: "KEY"))
    var publicKey: String?

    @Option(
        help: ArgumentHelp(
            "The server's address as clients reach it, HOST:PORT or HOST (the port of the server's --listen) (default: the server's --listen address).",
            valueName: "HOST:PORT"))
    var endpoint: String?

    @Option(help: ArgumentHelp("Directory for NAME.key, NAME.pub and NAME.toml.", valueName: "DIR"))
    var out: String = "."

    @Flag(help: "Put the private key (and psk) into NAME.toml itself instead of beside it (the file is then a secret).")
    var inlineKey = false

    @Flag(help: "Also print NAME.toml (NAME.conf in WireGuard mode) as a QR code in the terminal.")
    var qr = false

    @Option(
        help: ArgumentHelp(
            "The server's wire protocol, tunvpn or wireguard (default: the server config's protocol); wireguard writes NAME.conf for wg-quick and the WireGuard apps.",
            valueName: "NAME"))
    var `protocol`: String?

    @Option(
        help: ArgumentHelp("WireGuard mode: a resolver for the client (wg-quick's DNS), repeatable, e.g. 10.8.0.1.", valueName: "ADDR"))
    var dns: [String] = []

    @Option(
        help: ArgumentHelp(
            "WireGuard mode: a network the client routes to the server (wg-quick's AllowedIPs), repeatable (default: 0.0.0.0/0 and ::/0, all traffic).",
            valueName: "CIDR"))
    var route: [String] = []

    func validate() throws {
        if let problem = Provisioning.nameProblem(name) {
            throw ValidationError("NAME '\(name)' \(problem); e.g. tunvpn add-client laptop")
        }
        if let dev = server.dev { try validateInterfaceName(dev, option: "--dev") }
        if let publicKey, (try? PublicKey(base64: publicKey)) == nil {
            throw ValidationError("--public-key is not a base64 X25519 public key (44 characters), e.g. --public-key \"$(cat laptop.pub)\"")
        }
        if publicKey != nil && inlineKey {
            throw ValidationError("--inline-key needs the private key, which stays on the client with --public-key: drop one")
        }
        for a in address where !a.contains("/") && IPAddress(a) == nil {
            throw ValidationError("--address '\(a)' is not an address: the client's like 10.8.0.7, or the server's prefix like 10.8.0.1/16")
        }
        if let name = `protocol`, ProtocolMode(rawValue: name) == nil {
            let modes = ProtocolMode.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("unknown --protocol '\(name)': give one of \(modes), e.g. --protocol wireguard")
        }
        _ = try dnsResolvers(dns, option: "--dns")
        for r in route where !r.contains("/") || (IPv4Prefix(r) == nil && IPv6Prefix(r) == nil) {
            throw ValidationError("--route '\(r)' is not a network with a prefix length, like 10.0.0.0/8 or 2001:db8::/32")
        }
    }

    /// What WireGuard mode cannot do, once the mode is known (from --protocol or the server's config): the
    /// wg-quick file holds the client's private key, so add-client must make the pair.
    func checkWireGuardMode(_ mode: ProtocolMode) throws(ControlError) {
        guard mode == .wireguard else {
            for (option, given) in [("--dns", !dns.isEmpty), ("--route", !route.isEmpty)] where given {
                throw ControlError(
                    "\(option) is for WireGuard mode's NAME.conf: in tunvpn mode the server pushes DNS (tunvpn server --dns) and the client picks routes (tunvpn client --route); drop it, or add --protocol wireguard")
            }
            return
        }
        if publicKey != nil {
            throw ControlError(
                "--public-key cannot be used in WireGuard mode: NAME.conf (wg-quick) holds the client's private key; drop --public-key and let add-client make the pair")
        }
        if inlineKey {
            throw ControlError("--inline-key is for NAME.toml: the wg-quick NAME.conf of WireGuard mode always holds the private key; drop --inline-key")
        }
    }

    func run() throws {
        try reportingErrors {
            let prefixes = address.filter { $0.contains("/") }
            let fixed = address.filter { !$0.contains("/") }.compactMap(IPAddress.init)
            let serverCommand = try server.server(prefixes: prefixes, noIPv6: noIPv6, protocolName: `protocol`)
            let mode = serverCommand.common.protocolMode
            try checkWireGuardMode(mode)
            guard let (prefix, configured6) = try? serverCommand.tunnelAddresses() else {
                preconditionFailure("Server.parse validated --address")
            }
            let serverKey = try KeyFiles.loadPrivateKey(serverCommand.key).publicKey
            // The IPv6 prefix the server's tunnel carries, decided as the server decides it on this host.
            var settings = ServerConfiguration(address: prefix)
            settings.address6 = configured6
            settings.noIPv6 = serverCommand.noIPv6
            settings.tunnel.mtu = serverCommand.common.mtu
            let prefix6 = ServerDaemon.tunnelPrefix6(settings, serverKey: serverKey)
            let clientsFile = serverCommand.clients
            var fixed4: IPv4Address? = nil
            var fixed6: IPv6Address? = nil
            for a in fixed {
                switch a {
                case .v4(let v): if fixed4 != nil { throw ControlError("--address given two client IPv4 addresses; give one") } else { fixed4 = v }
                case .v6(let v): if fixed6 != nil { throw ControlError("--address given two client IPv6 addresses; give one") } else { fixed6 = v }
                }
            }
            let endpointText = try Provisioning.clientEndpoint(endpoint, listen: serverCommand.listen)
            let pskFile = psk ?? serverCommand.common.psk
            // A psk is 32 random bytes, not a clamped X25519 scalar (`tunvpn genpsk`, `wg genpsk`).
            let psk = try pskFile.map { try KeyFiles.loadPresharedKey($0) }

            // With a registry, the client goes there (for every server) instead of into the allow-list.
            let registry = try serverCommand.registry.map { (url) throws in
                try PeerRegistry(try RegistryURL(url), passwordFile: serverCommand.registryPasswordFile)
            }
            // Read and check everything before writing anything.
            let existing = registry == nil && KeyFiles.exists(clientsFile)
                ? String(decoding: try KeyFiles.readConfigurationFile(clientsFile, what: "allow-list"), as: UTF8.self) : ""
            let list = try AllowListFile.parseAllowList(Array(existing.utf8), file: clientsFile, prefix: prefix, prefix6: prefix6)
            let clientKey: PublicKey
            var privateKey: PrivateKey? = nil
            if let publicKey {
                clientKey = try PublicKey(base64: publicKey)
            } else {
                let key = PrivateKey()
                privateKey = key
                clientKey = key.publicKey
            }
            let base = out.hasSuffix("/") ? out + name : out + "/" + name
            for path in [base + ".toml", base + ".conf", base + ".key", base + ".pub", base + ".psk"] where KeyFiles.exists(path) {
                throw ControlError("\(path): already exists; move it away or pick another --out or NAME")
            }
            let allocation: (address: IPv4Address, address6: IPv6Address?, line: String)
            if let registry {
                // Allocated in the database, in one transaction: the same address on every server.
                let row = try registry.add(
                    name: name, publicKey: clientKey, address: fixed4, address6: fixed6, pool: prefix, pool6: prefix6)
                guard let address = row.address4.flatMap({ IPv4Address($0) }) else {
                    preconditionFailure("PeerRegistry.add always gives an IPv4 address")
                }
                let address6 = row.address6.flatMap { IPv6Address($0) }
                allocation = (address, address6, Provisioning.line(key: clientKey, address: address, address6: address6, name: name))
            } else {
                let allocated = try Provisioning.allocate(
                    name: name, key: clientKey, list: list, file: clientsFile, prefix: prefix, prefix6: prefix6,
                    address: fixed4, address6: fixed6)
                allocation = (allocated.address, allocated.address6, allocated.line)
            }
            try KeyFiles.ensureDirectory(out)
            if mode == .wireguard, let privateKey {
                // WireGuard mode: NAME.conf (wg-quick) and NAME.pub; the private key and psk live in the file.
                let conf = try Provisioning.wgQuickFile(
                    privateKey: privateKey, address: allocation.address, address6: allocation.address6, prefix: prefix,
                    prefix6: prefix6, dns: try dnsResolvers(dns, option: "--dns"), serverKey: serverKey, psk: psk,
                    endpoint: endpointText, routes: route
                ).render()
                try KeyFiles.write(conf, to: base + ".conf", mode: 0o600, overwrite: false)
                try KeyFiles.write(clientKey.base64 + "\n", to: base + ".pub", mode: 0o644, overwrite: false)
                if registry == nil {
                    try Provisioning.replaceAtomically(clientsFile, with: Provisioning.appending(allocation.line, to: existing))
                }
                let addresses = [allocation.address.description] + (allocation.address6.map { [$0.description] } ?? [])
                let destination = registry.map { "the registry \($0.url.display)" } ?? clientsFile
                printLine("added \(name) to \(destination): \(clientKey.base64) \(addresses.joined(separator: " "))")
                printLine("wrote \(base).conf (wg-quick, mode 0600), \(base).pub")
                printLine(
                    "warning: \(base).conf holds the client's private key\(psk != nil ? " and the psk" : ""): send it only over a trusted channel and delete other copies")
                printLine("on the client: wg-quick up ./\(name).conf, or import it into a WireGuard app\(qr ? " by scanning the QR code below" : " (add-client --qr shows it as a QR code)")")
                if qr { printLine(try QRCode(bytes: Array(conf.utf8)).terminalText.trimmingSuffix("\n")) }
                if registry != nil {
                    printLine("every server with this --registry admits it within a second; no reload needed")
                } else {
                    try reloadServer(dev: server.dev, clients: clientsFile)
                }
                return
            }

            // The client's files (written as keygen writes its pair: KeyFiles.write, O_EXCL, the private key
            // 0600), then the server's list, then the reload.
            if let privateKey, !inlineKey {
                try KeyFiles.write(privateKey.base64 + "\n", to: base + ".key", mode: 0o600, overwrite: false)
            }
            try KeyFiles.write(clientKey.base64 + "\n", to: base + ".pub", mode: 0o644, overwrite: false)
            if let psk, !inlineKey { try KeyFiles.write(psk.base64 + "\n", to: base + ".psk", mode: 0o600, overwrite: false) }
            let config = ClientConfigFile(
                name: name, serverKey: serverKey, endpoint: endpointText,
                keyFile: inlineKey ? nil : name + ".key", inlinePrivateKey: inlineKey ? privateKey?.base64 : nil,
                psk: psk.map { inlineKey ? $0.base64 : name + ".psk" }, inlinePSK: inlineKey,
                address: allocation.address, address6: allocation.address6)
            try KeyFiles.write(config.text, to: base + ".toml", mode: 0o600, overwrite: false)
            if registry == nil {
                try Provisioning.replaceAtomically(clientsFile, with: Provisioning.appending(allocation.line, to: existing))
            }

            let addresses = [allocation.address.description] + (allocation.address6.map { [$0.description] } ?? [])
            let destination = registry.map { "the registry \($0.url.display)" } ?? clientsFile
            printLine("added \(name) to \(destination): \(clientKey.base64) \(addresses.joined(separator: " "))")
            var files = "wrote \(base).toml (mode 0600)"
            if privateKey != nil && !inlineKey { files += ", \(base).key (private, mode 0600)" }
            files += ", \(base).pub"
            if psk != nil && !inlineKey { files += ", \(base).psk (mode 0600)" }
            printLine(files)
            if inlineKey {
                printLine("warning: \(base).toml holds the client's private key\(psk != nil ? " and the psk" : ""): send it only over a trusted channel and delete other copies")
            } else if publicKey != nil {
                printLine("on the client: put its private key beside \(name).toml as \(name).key, then run tunvpn client --config \(name).toml")
            } else {
                printLine("on the client: copy \(name).toml with \(name).key\(psk != nil ? " and \(name).psk" : "") into one directory, then run tunvpn client --config \(name).toml")
            }
            if qr { printLine(try QRCode(bytes: Array(config.text.utf8)).terminalText.trimmingSuffix("\n")) }
            if registry != nil {
                printLine("every server with this --registry admits it within a second; no reload needed")
            } else {
                try reloadServer(dev: server.dev, clients: clientsFile)
            }
        }
    }
}

struct RemoveClient: ParsableCommand, ReadsServerConfig {
    static let configuration = CommandConfiguration(
        commandName: "remove-client",
        abstract: "Remove a client from the server's allow-list by name, and reload the server.",
        discussion: """
            The client's sessions end at the reload. Its files (NAME.toml,
            NAME.key) are left alone.

            Examples:
              tunvpn remove-client laptop
              tunvpn remove-client laptop --config /etc/tunvpn/server.toml
            """)

    @Argument(help: ArgumentHelp("The client's name, as add-client wrote it (the first word of its allow-list comment).", valueName: "NAME"))
    var name: String

    @OptionGroup var server: ServerSideOptions

    func validate() throws {
        if let dev = server.dev { try validateInterfaceName(dev, option: "--dev") }
    }

    func run() throws {
        try reportingErrors {
            if let (url, passwordFile) = try server.registrySettings() {
                let registry = try PeerRegistry(try RegistryURL(url), passwordFile: passwordFile)
                guard try registry.remove(name: name) else {
                    throw ControlError("no client named \(name) in the registry \(registry.url.display); check the name (tunvpn show lists the connected ones)")
                }
                printLine("removed \(name) from the registry \(registry.url.display): its sessions end on every server within a second")
                return
            }
            // Only the file's name is needed: neither the key nor the prefixes.
            let clientsFile = try server.clientsFile()
            let text = String(decoding: try KeyFiles.readConfigurationFile(clientsFile, what: "allow-list"), as: UTF8.self)
            let (kept, removed) = try Provisioning.removing(name: name, from: text, file: clientsFile)
            try Provisioning.replaceAtomically(clientsFile, with: kept)
            for client in removed {
                printLine("removed \(name) (\(client.key.base64), line \(client.line)) from \(clientsFile)")
            }
            try reloadServer(dev: server.dev, clients: clientsFile)
        }
    }
}

extension ServerSideOptions {
    /// The registry and its password file: the flags, else the config file's `registry` and
    /// `registry-password-file` (nil: the server uses the allow-list).
    func registrySettings() throws -> (url: String, passwordFile: String?)? {
        var url = registry
        var passwordFile = registryPasswordFile
        if let config, url == nil || passwordFile == nil {
            let bytes: [UInt8]
            do { bytes = try KeyFiles.readConfigurationFile(config, what: "config file") } catch {
                throw ConfigFileError(file: config, line: nil, key: nil, problem: error.problem)
            }
            let settings = try ConfigFile.settings(
                fromTOML: String(decoding: bytes, as: UTF8.self), file: config, for: ConfigSchema(Server.self))
            for argument in settings.flatMap(\.arguments) {
                if url == nil, argument.hasPrefix("--registry=") { url = String(argument.dropFirst("--registry=".count)) }
                if passwordFile == nil, argument.hasPrefix("--registry-password-file=") {
                    passwordFile = String(argument.dropFirst("--registry-password-file=".count))
                }
            }
        }
        return url.map { ($0, passwordFile) }
    }

    /// The allow-list file: --clients, else the config file's `clients`, else the server's default.
    func clientsFile() throws -> String {
        if let clients { return clients }
        guard let config else { return Server.defaultClients }
        let bytes: [UInt8]
        do { bytes = try KeyFiles.readConfigurationFile(config, what: "config file") } catch {
            throw ConfigFileError(file: config, line: nil, key: nil, problem: error.problem)
        }
        let settings = try ConfigFile.settings(fromTOML: String(decoding: bytes, as: UTF8.self), file: config, for: ConfigSchema(Server.self))
        for argument in settings.flatMap(\.arguments) where argument.hasPrefix("--clients=") {
            return String(argument.dropFirst("--clients=".count))
        }
        return Server.defaultClients
    }
}

extension Server {
    /// The allow-list file `tunvpn server` reads when given none.
    static var defaultClients: String { (try? Server.parse([]))?.clients ?? "keys/clients" }
}

/// Makes the running server reload its allow-list `clients` and prints the outcome; says so when none runs.
/// - Throws: `ControlError` with the server's reason when the reload failed, or when the server reads
///   another file.
func reloadServer(dev: String?, clients: String) throws {
    let running = try HostNetwork.instances().filter { $0.owner != nil && (dev == nil || $0.device == dev) }
    guard !running.isEmpty else {
        printLine("no tunvpn server is running in this network namespace\(dev.map { " on \($0)" } ?? ""); it reads the allow-list when it starts")
        return
    }
    // A server that reads another file would reload without the change.
    if running.count == 1, let served = InstanceRequests.allowListPath(device: running[0].device), served != absolutePath(clients) {
        throw ControlError(
            "the server on \(running[0].device) reads \(served), not \(clients): the change is in \(clients) only; pass the server's file with --clients or --config")
    }
    do { printLine("server: " + (try InstanceRequests.reload(device: dev, pid: nil))) } catch let error as ControlError {
        throw ControlError("the allow-list is written, but the server's reload failed: \(error.message)")
    }
}

struct Genpsk: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a new random pre-shared key (base64 of 32 bytes), as `wg genpsk` does, for --psk files.",
        discussion: """
            Example:
              (umask 077; tunvpn genpsk > /etc/tunvpn/psk)
            """)

    func run() throws { print(Provisioning.newPresharedKey()) }
}
