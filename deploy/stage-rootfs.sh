#!/usr/bin/env bash
# Builds the root filesystem of the Iglu container image from local files:
# the binaries from target/<profile>/ plus exactly the shared libraries they
# link (found with ldd). No registry is needed: the Dockerfile is FROM scratch.
# Usage: deploy/stage-rootfs.sh [debug|release]   (default: release)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
bins=(iglu iglu-plugin-echo iglu-plugin-thermostat iglu-plugin-automation iglu-plugin-history iglu-plugin-lights)
root=deploy/rootfs
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc/iglu" "$root/tmp" "$root/run/secrets" "$root/var/lib/iglu"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/iglu"
for b in "${bins[@]}"; do
  src="${CARGO_TARGET_DIR:-target}/$profile/$b"
  [ -x "$src" ] || { echo "missing $src: run cargo build --workspace --bins${profile/debug/}${profile/release/ --release}" >&2; exit 1; }
  cp "$src" "$root/usr/local/bin/"
  # Debug info is most of a debug binary; the image does not need it.
  strip --strip-debug "$root/usr/local/bin/$b" 2>/dev/null || true
  # Every shared library, and the dynamic loader itself, at its own path.
  ldd "$src" | grep -oE '/[^ ]+' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
# Name resolution for compose service names: files, then the engine's DNS.
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/usr/local/bin/iglu\n' > "$root/etc/passwd"
cp deploy/iglu.toml "$root/etc/iglu/iglu.toml"
echo "staged $root from ${CARGO_TARGET_DIR:-target}/$profile"
