// The status socket and the metrics endpoint of a running server or client: both answer from a fresh
// `EngineSnapshot` per request (taken under the core's lock for a moment), each on its own thread.

import Engine
import Logging
import Platform
import Transport

/// What `Server.run` and `Client.run` start next to the engine and stop before tearing down.
///
/// Lifetime: `start` binds both sockets (the status socket is best effort: without it the tunnel still
/// runs, with a warning); `stop()` closes them and removes the status socket file. Idempotent.
struct StatusServices {
    private let status: UnixSocketServer?
    private let metrics: HTTPServer?

    /// Starts the status socket for `device` and, if `metricsAddress` is given, the metrics endpoint.
    ///
    /// - Parameters:
    ///   - listenPort: the UDP port the engine's socket is bound to (the client's is ephemeral).
    ///   - metricsAddress: `ADDR:PORT` for the metrics endpoint (validated by `CommonOptions`).
    /// - Throws: `CLIError` if the metrics endpoint cannot be bound.
    static func start(
        engine: TunnelEngine, device: String, listenPort: UInt16, metricsAddress: String?, logger: Logger
    ) throws -> StatusServices {
        let snapshot: @Sendable () -> EngineSnapshot = {
            engine.snapshot(now: SystemClock().monotonicNow(), device: device, listenPort: listenPort)
        }
        // The threads are created before the main thread sheds its capabilities and would keep them all,
        // so each drops them first: serving bound sockets from a snapshot needs none (the two the later
        // uid change needs in every thread stay until that change clears them).
        let threadStart: @Sendable () -> Void = {
            if !Privileges.enterServiceThread() { logger.warning("a status thread could not drop its capabilities") }
        }
        var metrics: HTTPServer? = nil
        if let metricsAddress {
            guard let endpoint = Endpoint(metricsAddress) else {
                throw CLIError("--metrics '\(metricsAddress)' is not ADDRESS:PORT")
            }
            do {
                metrics = try HTTPServer(endpoint: endpoint, threadStart: threadStart) { request in
                    guard request.path == "/metrics" else {
                        return .text(404, "Not Found", "not found; metrics are at /metrics")
                    }
                    return HTTPResponse(
                        status: 200, reason: "OK", contentType: PrometheusText.contentType,
                        body: Array(PrometheusText.render(snapshot()).utf8))
                }
            } catch {
                throw CLIError("--metrics \(metricsAddress): \(error)")
            }
            if let bound = metrics?.endpoint { logger.info("metrics at http://\(bound)/metrics") }
        }
        let path = HostNetwork.statusSocketPath(device: device)
        var status: UnixSocketServer? = nil
        do {
            try HostNetwork.makeStateDirectory()
            status = try UnixSocketServer(path: path, threadStart: threadStart) {
                Array((StatusJSON.encode(snapshot()).text + "\n").utf8)
            }
            logger.debug("status socket \(path)")
        } catch {
            logger.warning("no status socket, so `tunvpn show` will not see this instance: \(error)")
        }
        return StatusServices(status: status, metrics: metrics)
    }

    /// Stops both servers and removes the status socket file.
    func stop() {
        status?.stop()
        metrics?.stop()
    }
}
