// The one-line error a command gives for its arguments, shared by the option tests.

@testable import tunvpn

/// The one-line error `tunvpn server ARGUMENTS` gives, or nil when they parse.
func serverError(_ arguments: [String]) -> String? {
    do {
        _ = try Server.parse(arguments)
        return nil
    } catch {
        return Server.message(for: error)
    }
}

/// The one-line error `tunvpn client` gives for ARGUMENTS after the required --peer-key and --endpoint, or
/// nil when they parse.
func clientError(_ arguments: [String]) -> String? {
    do {
        _ = try Client.parse(["--peer-key", "s.pub", "--endpoint", "203.0.113.7:51820"] + arguments)
        return nil
    } catch {
        return Client.message(for: error)
    }
}
