#!/usr/bin/env bash
# Builds Docker Compose v2 (the `docker-compose` binary) from its Go module into .tools/bin/docker-compose.
# Pinned by tools/compose/go.mod. The tests use it to validate docker-compose.yml (`config` needs no Docker engine).
# A cold build takes several minutes on 2 cores; afterwards it is copied from the cache.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/.tools/bin/docker-compose"
# Builds are cached outside the checkout, keyed by what pins them, so a fresh clone copies instead of rebuilding.
key=$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)
cache="${HODLBOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hodlboard}/docker-compose-$key"

mkdir -p "$(dirname "$out")"
if [ -x "$cache" ]; then
  cp "$cache" "$out.tmp" && mv "$out.tmp" "$out"
  echo "docker-compose: from cache $cache ($("$out" version))"
  exit 0
fi

command -v go >/dev/null || { echo "docker-compose: 'go' is required to build the Compose tool" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0

cd "$here"
echo "docker-compose: building (a cold build takes several minutes)..." >&2
version=$(go list -m -f '{{.Version}}' github.com/docker/compose/v2)
go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" \
  -o "$out.tmp" github.com/docker/compose/v2/cmd
"$out.tmp" version
mkdir -p "$(dirname "$cache")"
cp "$out.tmp" "$cache.tmp" && mv "$cache.tmp" "$cache"
mv "$out.tmp" "$out"
