#!/usr/bin/env bash
# Builds a real InfluxDB OSS 2 server from its Go module into .tools/bin/influxd.
# Pinned by tools/influxd/go.mod; flux's Rust core (libflux) is compiled by cargo
# through influxdata's pkg-config wrapper. A cold build takes 15-35 min on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools="$root/.tools"
out="$tools/bin/influxd"
# Builds are cached outside the checkout, keyed by what pins them, so a fresh clone copies instead of rebuilding.
key=$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)
cache="${HODLBOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hodlboard}/influxd-$key"

mkdir -p "$tools/bin"
if [ -x "$cache" ]; then
  cp "$cache" "$out.tmp" && mv "$out.tmp" "$out"
  echo "influxd: from cache $cache ($("$out" version | head -n1))"
  exit 0
fi

for cmd in go cargo cc; do
  command -v "$cmd" >/dev/null || { echo "influxd: '$cmd' is required to build influxd" >&2; exit 1; }
done
if ! command -v pkg-config >/dev/null; then
  echo "influxd: installing Debian's pkg-config (needed by the flux build)" >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq pkg-config >/dev/null
  else
    echo "influxd: please install pkg-config" >&2; exit 1
  fi
fi

mkdir -p "$tools/pkg-config-wrapper"
export GOTOOLCHAIN=local
# flux pins an older Rust in rust-toolchain.toml; use the toolchain that is installed.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-$(rustc --version | awk '{print $2}')}"
# flux denies warnings (its 'strict' feature); newer compilers warn about more.
export RUSTFLAGS="${RUSTFLAGS:-} --cap-lints=warn"

cd "$here"
# The wrapper lives outside PATH so it never shadows Debian's pkg-config, which it calls.
go build -o "$tools/pkg-config-wrapper/pkg-config" github.com/influxdata/pkg-config
export PKG_CONFIG="$tools/pkg-config-wrapper/pkg-config"

echo "influxd: building (Go + Rust, a cold build takes a while)..." >&2
version=$(go list -m -f '{{.Version}}' github.com/influxdata/influxdb/v2)
go build -tags sqlite_foreign_keys,sqlite_json \
  -ldflags "-X main.version=$version -X main.commit=gomod -X main.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -o "$out.tmp" github.com/influxdata/influxdb/v2/cmd/influxd
"$out.tmp" version
mkdir -p "$(dirname "$cache")"
cp "$out.tmp" "$cache.tmp" && mv "$cache.tmp" "$cache"
mv "$out.tmp" "$out"
