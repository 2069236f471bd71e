// Root-only tests: skipped when a developer runs `swift test` without root, but never skipped in CI.
//
// `.ci/run` exports TUNVPN_REQUIRE_ROOT_TESTS=1. With it set, `.needsRoot(...)` enables the test even
// when the process is not root, so a CI runner without root fails those tests (they cannot create
// namespaces or TUN devices) instead of reporting them as skipped; HarnessTests also has a test that
// fails with a plain message in that case.

import Glibc
import Testing

public enum RootTests {
    /// True when the environment asks for every root-only test to run (CI).
    public static var required: Bool {
        guard let value = getenv("TUNVPN_REQUIRE_ROOT_TESTS") else { return false }
        return String(cString: value) == "1"
    }

    /// True when root-only tests run: as root, or whenever they are required.
    public static var enabled: Bool { geteuid() == 0 || required }
}

extension Trait where Self == ConditionTrait {
    /// Runs the test or suite only as root, except that TUNVPN_REQUIRE_ROOT_TESTS=1 (set by `.ci/run`)
    /// turns the skip into a run, and so into a failure when root is missing.
    public static func needsRoot(_ why: Comment) -> Self { .enabled(if: RootTests.enabled, why) }
}
