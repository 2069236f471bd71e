#!/usr/bin/env bash
# Builds the Debian package tunvpn_VERSION_ARCH.deb from this repository (packaging/README.md):
#   packaging/build-deb.sh [--out DIR] [--version VERSION] [--binary PATH --allow-swift-runtime]
#
# By default it builds the release binary (`swift build -c release --static-swift-stdlib --product
# tunvpn`: the Swift runtime and Foundation linked in, so the target machine needs no Swift), then makes
# the shell completions and the man page from that binary's own help text: the completions with
# `tunvpn --generate-completion-script`, the man page with swift-argument-parser's generate-manual tool
# (the tool behind its `generate-manual` package plugin, run here on the binary that ships; the plugin
# itself would build every product in one configuration first). `Depends:` comes from dpkg-shlibdeps(1)
# on the binary. The tree is put together by hand and packed with `dpkg-deb --build --root-owner-group`:
# the package is one prebuilt binary plus files, for which debian/rules and dpkg-buildpackage would add a
# second build description and a debhelper dependency without changing the result.
#
# Options:
#   --out DIR              where the .deb goes (default .build/deb)
#   --version VERSION      Debian version (default: from `tunvpn --version`, else 0~gitDATE.HASH of HEAD)
#   --binary PATH          package this tunvpn instead of building the release binary
#   --allow-swift-runtime  accept a binary linked to the Swift runtime's shared libraries (the debug build
#                          the tests use): such a package runs only where those libraries are, so not on
#                          a machine without Swift
#   --manual-tool PATH     swift-argument-parser's generate-manual executable (default: built from the
#                          checkout in .build/checkouts into .build/generate-manual)
# Prints the path of the .deb on its last line of output.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/.build/deb"
version=""
binary=""
allow_swift_runtime=0
manual_tool=""

die() { echo "build-deb.sh: $*" >&2; exit 1; }
while (($#)); do
    case "$1" in
        --out) out=${2:?--out needs a directory, e.g. --out /tmp/deb}; shift 2 ;;
        --version) version=${2:?--version needs a Debian version, e.g. --version 0.3.0}; shift 2 ;;
        --binary) binary=${2:?--binary needs a path, e.g. --binary .build/debug/tunvpn}; shift 2 ;;
        --allow-swift-runtime) allow_swift_runtime=1; shift ;;
        --manual-tool) manual_tool=${2:?--manual-tool needs a path, e.g. --manual-tool /tmp/generate-manual}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (known: --out, --version, --binary, --allow-swift-runtime, --manual-tool)" ;;
    esac
done
for tool in dpkg-deb dpkg-shlibdeps objdump strip gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev binutils)"
done

# 1. The binary.
if [[ -z "$binary" ]]; then
    (cd "$repo" && swift build -c release --static-swift-stdlib --product tunvpn)
    binary="$(cd "$repo" && swift build -c release --static-swift-stdlib --show-bin-path)/tunvpn"
fi
[[ -x "$binary" ]] || die "--binary $binary: not an executable file (e.g. --binary .build/debug/tunvpn)"
needed=$(objdump -p "$binary" | awk '$1 == "NEEDED" { print $2 }')
swift_libs=$(grep -E '^(libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime)' <<<"$needed" || true)
if [[ -n "$swift_libs" && $allow_swift_runtime == 0 ]]; then
    die "$binary needs the Swift runtime ($(tr '\n' ' ' <<<"$swift_libs")); build it with --static-swift-stdlib, or pass --allow-swift-runtime for a test package"
fi

arch=$(dpkg --print-architecture)
commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
commit_date=$(git -C "$repo" log -1 --format=%cd --date=format:%Y-%m-%d 2>/dev/null || date -u +%Y-%m-%d)
if [[ -z "$version" ]]; then
    version=$("$binary" --version 2>/dev/null | head -n 1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1 || true)
    [[ -n "$version" ]] || version="0~git${commit_date//-/}.$commit"
fi
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "--version $version: not a Debian version (deb-version(7)), e.g. --version 0.3.0"

work=$(mktemp -d "${TMPDIR:-/tmp}/tunvpn-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/DEBIAN"

# 2. The files, each with its mode (dpkg-deb --root-owner-group makes them all root:root).
install -D -m 0755 "$binary" "$root/usr/bin/tunvpn"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/tunvpn"
# The units name /usr/local/bin/tunvpn (the manual install of packaging/README.md); the package's is /usr/bin.
for unit in tunvpn-server.service tunvpn-client@.service; do
    install -D -m 0644 "$repo/packaging/systemd/$unit" "$root/lib/systemd/system/$unit"
    sed -i 's|/usr/local/bin/tunvpn|/usr/bin/tunvpn|g' "$root/lib/systemd/system/$unit"
done
install -D -m 0644 "$repo/packaging/sysusers.d/tunvpn.conf" "$root/usr/lib/sysusers.d/tunvpn.conf"

# Completions and the man page, generated now from the binary that ships (never committed).
# bash-completion sources its files, so the script's #! line goes (lintian: bash-completion-with-hashbang).
"$root/usr/bin/tunvpn" --generate-completion-script bash | sed '1{/^#!/d}' > "$work/tunvpn.bash"
"$root/usr/bin/tunvpn" --generate-completion-script zsh > "$work/_tunvpn"
"$root/usr/bin/tunvpn" --generate-completion-script fish > "$work/tunvpn.fish"
install -D -m 0644 "$work/tunvpn.bash" "$root/usr/share/bash-completion/completions/tunvpn"
install -D -m 0644 "$work/_tunvpn" "$root/usr/share/zsh/vendor-completions/_tunvpn"
install -D -m 0644 "$work/tunvpn.fish" "$root/usr/share/fish/vendor_completions.d/tunvpn.fish"
if [[ -z "$manual_tool" ]]; then
    parser="$repo/.build/checkouts/swift-argument-parser"
    [[ -f "$parser/Package.swift" ]] || die "$parser: missing; run 'swift build' once (or pass --manual-tool PATH)"
    swift build --package-path "$parser" --scratch-path "$repo/.build/generate-manual" --product generate-manual >&2
    manual_tool="$repo/.build/generate-manual/debug/generate-manual"
fi
mkdir -p "$work/man"
"$manual_tool" "$root/usr/bin/tunvpn" --date "$commit_date" --output-directory "$work/man"
[[ -s "$work/man/tunvpn.1" ]] || die "$manual_tool wrote no tunvpn.1"
install -D -m 0644 "$work/man/tunvpn.1" "$root/usr/share/man/man1/tunvpn.1"
gzip -9n "$root/usr/share/man/man1/tunvpn.1"

# Documentation and the example configs.
doc="$root/usr/share/doc/tunvpn"
install -D -m 0644 "$repo/README.md" "$doc/README.md"
install -D -m 0644 "$repo/packaging/README.md" "$doc/README.packaging.md"
for f in server.toml client.toml README.md; do
    install -D -m 0644 "$repo/config/$f" "$doc/examples/$f"
done
install -D -m 0644 "$repo/packaging/debian/copyright" "$doc/copyright"
maintainer="${DEBFULLNAME:-$(git -C "$repo" config user.name || echo tunvpn)} <${DEBEMAIL:-$(git -C "$repo" config user.email || echo root@localhost)}>"
# A native package (a version without "-REVISION") has changelog.gz, others changelog.Debian.gz (policy 12.7).
changelog="$doc/changelog.Debian.gz"
[[ "$version" == *-* ]] || changelog="$doc/changelog.gz"
printf 'tunvpn (%s) unstable; urgency=medium\n\n  * Built from commit %s by packaging/build-deb.sh.\n\n -- %s  %s\n' \
    "$version" "$commit" "$maintainer" "$(date -u -R -d "$commit_date")" | gzip -9n > "$changelog"
chmod 0644 "$changelog"

# 3. Maintainer scripts and the control file. The postinst makes the user with systemd-sysusers where it
# exists, else adduser; Depends names adduser (in every debootstrap'd bookworm, minbase too), since
# "adduser | systemd" would still draw lintian's maintainer-script-needs-depends-on-adduser.
install -m 0755 "$repo/packaging/debian/postinst" "$repo/packaging/debian/postrm" "$root/DEBIAN/"
# dpkg-shlibdeps reads debian/control of a source tree; a two-line one in the work directory serves.
mkdir -p "$work/src/debian"
printf 'Source: tunvpn\n\nPackage: tunvpn\nArchitecture: any\n' > "$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O -e "$root/usr/bin/tunvpn" 2>"$work/shlibdeps.log") \
    || { cat "$work/shlibdeps.log" >&2; die "dpkg-shlibdeps failed on $binary"; }
shlibs=${shlibs#shlibs:Depends=}
[[ -n "$shlibs" ]] || die "dpkg-shlibdeps found no shared libraries in $binary"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: tunvpn
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $shlibs, iproute2, nftables | iptables, adduser
Recommends: iputils-ping, python3, tcpdump, procps, dnsmasq-base, libpq5
Section: net
Priority: optional
Description: encrypted layer-3 VPN for Linux
 tunvpn carries IP packets between a server and its clients through a TUN
 device, sealed in authenticated UDP frames (XChaCha20-Poly1305 by default,
 libsodium) after a WireGuard-style Noise IKpsk2 handshake with X25519 keys.
 It sets up addresses, routes, NAT and an optional kill switch itself and
 undoes them when it stops. Includes systemd units for a server and for
 client instances, and a system user for the privilege drop.
 .
 The recommended packages are what "tunvpn demo" needs to show the VPN
 working in throwaway network namespaces.
EOF

mkdir -p "$out"
deb="$out/tunvpn_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >&2
echo "$deb"
