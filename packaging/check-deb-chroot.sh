#!/usr/bin/env bash
# Checks a tunvpn .deb as "a fresh Debian 12 machine without Swift" would take it (packaging/README.md):
#   packaging/check-deb-chroot.sh .build/deb/tunvpn_VERSION_ARCH.deb [CHROOT_DIR]
# 1. a minimal bookworm made by debootstrap(8) from the configured Debian mirror (kept in CHROOT_DIR,
#    default /var/tmp/tunvpn-bookworm, and reused when it is there); it must have no swift;
# 2. `apt install ./tunvpn_*.deb` in it, which fetches the Depends and Recommends from the mirror;
# 3. `tunvpn --help`, `ldd`, the user tunvpn, and `tunvpn demo`.
# Every mount is made in a private mount namespace (unshare(1)), so none outlives a step. The demo runs in
# a new network namespace as well, with its own sysfs and /run: the host's network is never touched, not
# even by the demo's own namespaces (they nest in that one).
# Needs root, debootstrap and unshare (util-linux).
set -euo pipefail

deb=$(realpath "${1:?usage: check-deb-chroot.sh TUNVPN.deb [CHROOT_DIR]}")
dir=${2:-/var/tmp/tunvpn-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
name=$(basename "$deb")
step() { printf '\n== %s\n' "$*"; }

if [[ ! -x "$dir/usr/bin/apt-get" ]]; then
    step "debootstrap --variant=minbase bookworm $dir $mirror"
    debootstrap --variant=minbase bookworm "$dir" "$mirror"
fi
step "no Swift in the chroot"
if chroot "$dir" sh -c 'command -v swift || ls -d /usr/share/swift /opt/swift 2>/dev/null'; then
    echo "check-deb-chroot.sh: $dir has Swift; use a fresh one" >&2
    exit 1
fi
echo "none"

cp "$deb" "$dir/tmp/$name"
step "apt install ./$name"
unshare --mount --propagation private -- bash -euc '
    mount -t proc proc "$1/proc"
    chroot "$1" sh -euc "cd /tmp && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt install -y ./$2"
' check "$dir" "$name"

step "the installed package"
chroot "$dir" sh -euxc '
    dpkg -s tunvpn | grep -E "^(Status|Version|Depends|Recommends):"
    ldd /usr/bin/tunvpn
    ! ldd /usr/bin/tunvpn | grep -E "not found|libswift|libFoundation"
    tunvpn --help | head -n 3
    getent passwd tunvpn
    ls -ld /etc/tunvpn /etc/tunvpn/keys
    ls /usr/share/bash-completion/completions/tunvpn /usr/share/man/man1/tunvpn.1.gz
'

step "tunvpn demo (in a new network namespace)"
# The chroot's / must be a mount point: `ip netns exec` and `ip -n` remount it (mount --make-rslave /).
unshare --mount --net --propagation private -- bash -euc '
    mount --bind "$1" "$1"
    mount -t proc proc "$1/proc"
    mount -t sysfs sysfs "$1/sys"
    mount --rbind /dev "$1/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$1/run"
    chroot "$1" tunvpn demo
' check "$dir"
