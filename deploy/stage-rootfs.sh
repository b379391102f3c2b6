#!/usr/bin/env bash
# Builds the root filesystem of the Iglu container image from local files:
# the binaries from target/<profile>/ plus exactly the shared libraries they
# link (found with ldd). No registry is needed: the Dockerfile is FROM scratch.
# Usage: deploy/stage-rootfs.sh [debug|release]   (default: release)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
bins=(iglu iglu-plugin-echo iglu-plugin-thermostat iglu-plugin-automation iglu-plugin-history iglu-plugin-lights iglu-plugin-mqtt-bridge iglu-z2m-sim)
root=deploy/rootfs
# stage_libs <binary> <root>: the shared libraries it links, and the loader.
stage_libs() {
  ldd "$1" | grep -oE '/[^ ]+' | while read -r lib; do
    mkdir -p "$2$(dirname "$lib")"
    cp -L "$lib" "$2$lib"
  done
}
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
  stage_libs "$src" "$root"
done
# Name resolution for compose service names: files, then the engine's DNS.
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/usr/local/bin/iglu\n' > "$root/etc/passwd"
cp deploy/iglu.toml "$root/etc/iglu/iglu.toml"
echo "staged $root from ${CARGO_TARGET_DIR:-target}/$profile"

# The demo's MQTT broker: this machine's Mosquitto (Debian's package).
mroot=deploy/mosquitto/rootfs
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$mosquitto" ] || { echo "missing mosquitto for the compose demo's broker: apt-get install mosquitto" >&2; exit 1; }
rm -rf "$mroot"
mkdir -p "$mroot/usr/sbin" "$mroot/etc/mosquitto" "$mroot/tmp"
chmod 1777 "$mroot/tmp"
cp "$mosquitto" "$mroot/usr/sbin/mosquitto"
stage_libs "$mosquitto" "$mroot"
cp deploy/mosquitto/mosquitto.conf "$mroot/etc/mosquitto/mosquitto.conf"
printf 'root:x:0:0:root:/:/usr/sbin/mosquitto\n' > "$mroot/etc/passwd"
printf 'root:x:0:\n' > "$mroot/etc/group"
printf 'hosts: files dns\n' > "$mroot/etc/nsswitch.conf"
echo "staged $mroot from $mosquitto"
