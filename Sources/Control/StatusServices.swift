// The status socket and the metrics endpoint of a running server or client: both answer from an
// `EngineSnapshot` (taken under the core's lock a chunk of peers at a time), each on its own few threads;
// the status socket from a fresh one per request, the metrics from one at most a second old. The status
// socket also takes `reload` requests (`tunvpn reload`) and answers with the outcome.
//
// Status socket requests, one line each: `status` (or nothing) → the status JSON; `reload` → the server
// re-reads its allow-list itself; `allow-list-path` → the file's absolute path; `reload-file COUNT` and
// COUNT bytes → the server takes that text as its allow-list (how `tunvpn reload`, run as root, hands over
// a file the server, no longer root, may not be allowed to read). Reload answers are one line, `ok
// MESSAGE` when the new allow-list took effect, `error MESSAGE` when it did not (a bad file, or a
// client, which has no allow-list). Only root can connect (the socket is 0600, root's).

import Engine
import Logging
import Platform
import Transport

/// What `Server.run` and `Client.run` start next to the engine and stop before tearing down.
///
/// Lifetime: `start` binds both sockets (the status socket is best effort: without it the tunnel still
/// runs, with a warning); `stop()` closes them and removes the status socket file. Idempotent.
public struct StatusServices {
    private let status: UnixSocketServer?
    private let metrics: HTTPServer?
    /// wg(8)'s configuration socket, in WireGuard mode only (`UAPIService`).
    private let uapi: UAPIService?

    /// Starts the status socket for `device` and, if `metricsAddress` is given, the metrics endpoint.
    ///
    /// - Parameters:
    ///   - listenPort: the UDP port the engine's socket is bound to (the client's is ephemeral).
    ///   - metricsAddress: `ADDR:PORT` for the metrics endpoint (validated by `CommonOptions`).
    /// - Throws: `ControlError` if the metrics endpoint cannot be bound.
    ///   - reload: the server's allow-list reload; nil for a client.
    ///   - uapi: serve wg(8)'s configuration socket with these settings (WireGuard mode); nil for none.
    ///     Best effort, as the status socket: without it the tunnel runs, with a warning.
    public static func start(
        engine: TunnelEngine, device: String, listenPort: UInt16, metricsAddress: String?,
        reload: AllowListReloader?, dns: (@Sendable () -> ClientDNSSnapshot?)? = nil,
        failover: (@Sendable () -> ClientFailoverSnapshot?)? = nil, uapi uapiSettings: UAPISettings? = nil, logger: Logger
    ) throws -> StatusServices {
        let snapshot: @Sendable () -> EngineSnapshot = {
            var s = engine.snapshot(now: SystemClock().monotonicNow(), device: device, listenPort: listenPort)
            if let dns { s.tunnel?.dns = dns() }
            if let failover { s.failover = failover() }
            return s
        }
        // The threads are created before the main thread sheds its capabilities and would keep them all,
        // so each drops them first: serving bound sockets from a snapshot needs none (the two the later
        // uid change needs in every thread stay until that change clears them).
        let threadStart: @Sendable () -> Void = {
            if !Privileges.enterServiceThread() { logger.warning("a status thread could not drop its capabilities") }
        }
        var metrics: HTTPServer? = nil
        if let metricsAddress {
            let (endpoint, resolution) = try EndpointText(
                metricsAddress, option: "--metrics", allowsPortZero: true, examplePort: 9586
            ).resolve(option: "--metrics")
            if let resolution { logger.info("\(resolution)") }
            let text = CachedMetrics { Array(PrometheusText.render(snapshot()).utf8) }
            do {
                metrics = try HTTPServer(endpoint: endpoint, threadStart: threadStart) { request in
                    guard request.path == "/metrics" else {
                        return .text(404, "Not Found", "not found; metrics are at /metrics")
                    }
                    return HTTPResponse(
                        status: 200, reason: "OK", contentType: PrometheusText.contentType, body: text.body)
                }
            } catch {
                throw ControlError("--metrics \(metricsAddress): \(error)")
            }
            if let bound = metrics?.endpoint {
                logger.info("metrics at http://\(bound)/metrics")
                if let warning = PrometheusText.exposureWarning(boundTo: bound) { logger.warning("\(warning)") }
            }
        }
        let path = HostNetwork.statusSocketPath(device: device)
        var status: UnixSocketServer? = nil
        do {
            try HostNetwork.checkStateDirectory()
            status = try UnixSocketServer(path: path, threadStart: threadStart) { request in
                let line = String(decoding: request.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
                let words = line.split(separator: " ")
                func answer(_ outcome: ReloadOutcome) -> [UInt8] {
                    Array(((outcome.succeeded ? "ok " : "error ") + outcome.message + "\n").utf8)
                }
                let noAllowList = ReloadOutcome(succeeded: false, message: "clients have no allow-list; nothing to reload")
                switch words.first ?? "" {
                case "", "status":
                    return Array((StatusDocument.json(snapshot()) + "\n").utf8)
                case "reload":
                    return answer(reload?.fromFile() ?? noAllowList)
                case "allow-list-path":
                    guard let reload else { return answer(noAllowList) }
                    return answer(ReloadOutcome(succeeded: true, message: reload.path))
                case "reload-file":
                    guard let reload else { return answer(noAllowList) }
                    let body = Array(request.drop { $0 != UInt8(ascii: "\n") }.dropFirst())
                    guard words.count == 2, let announced = Int(words[1]), announced == body.count else {
                        return answer(ReloadOutcome(succeeded: false, message: "the allow-list sent was cut short; nothing changed"))
                    }
                    return answer(reload.fromBytes(body))
                default:
                    return answer(
                        ReloadOutcome(succeeded: false, message: "unknown request; this tunvpn answers status, reload, reload-file and allow-list-path"))
                }
            }
            logger.debug("status socket \(path)")
        } catch {
            logger.warning("no status socket, so `tunvpn show` will not see this instance: \(error)")
        }
        var uapi: UAPIService? = nil
        if let uapiSettings {
            do {
                uapi = try UAPIService.start(
                    device: device, settings: uapiSettings, snapshot: snapshot, threadStart: threadStart, logger: logger)
                logger.debug("wg configuration socket \(HostNetwork.uapiSocketPath(device: device))")
            } catch {
                logger.warning("no wg configuration socket, so `wg show \(device)` will not see this instance: \(error)")
            }
        }
        return StatusServices(status: status, metrics: metrics, uapi: uapi)
    }

    /// Stops the servers and removes the socket files.
    public func stop() {
        status?.stop()
        metrics?.stop()
        uapi?.stop()
    }
}
