// TestSupport re-exports NamespaceLab (the namespace plans and the hex decoder, which `tunvpn demo`
// shares), so a test that imports TestSupport sees them as before they moved.

@_exported import NamespaceLab
