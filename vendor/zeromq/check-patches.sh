#!/usr/bin/env bash
# Proves that vendor/zeromq/src is exactly zeromq 0.7.0 from crates.io with
# the patches in vendor/zeromq/patches applied in order, nothing else.
# Fetches the pristine package with cargo (into the usual cargo cache).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fetch/src"
cat > "$work/fetch/Cargo.toml" <<'TOML'
[package]
name = "fetch-pristine-zeromq"
version = "0.0.0"
edition = "2021"
[dependencies]
zeromq = "=0.7.0"
TOML
echo 'fn main() {}' > "$work/fetch/src/main.rs"
(cd "$work/fetch" && cargo fetch --quiet)
pristine="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/zeromq-0.7.0 | head -n 1)"
mkdir -p "$work/tree"
cp -r "$pristine/src" "$work/tree/src"
for p in "$here"/patches/*.patch; do
  # The patches are `diff -ruN a/ b/` of the src folder.
  (cd "$work/tree/src" && patch --quiet -p1 < "$p")
done
if diff -r "$work/tree/src" "$here/src" > "$work/diff"; then
  echo "vendor/zeromq: zeromq 0.7.0 + $(ls "$here"/patches/*.patch | wc -l) patches, exactly"
else
  echo "vendor/zeromq/src differs from zeromq 0.7.0 + patches:" >&2
  cat "$work/diff" >&2
  exit 1
fi
