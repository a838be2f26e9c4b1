#!/usr/bin/env bash
# Runs buf (from the npm registry, installed once into the tools cache) on proto/.
#
#   scripts/buf.sh lint | build | format --diff | breaking --against …
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS_DIR="${STOCKCAST_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stockcast/tools}"
BUF_VERSION="${STOCKCAST_BUF_VERSION:-1.75.0}"
BUF="$TOOLS_DIR/node/node_modules/.bin/buf"

if [[ ! -x "$BUF" ]] || [[ "$("$BUF" --version 2>/dev/null)" != "$BUF_VERSION" ]]; then
  command -v npm >/dev/null || { echo "buf.sh: npm is needed to install buf (apt-get install npm)" >&2; exit 1; }
  echo "buf.sh: installing @bufbuild/buf@$BUF_VERSION into $TOOLS_DIR/node" >&2
  mkdir -p "$TOOLS_DIR/node"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR/node" "@bufbuild/buf@$BUF_VERSION" >&2
fi

cmd="${1:-lint}"
shift || true
exec "$BUF" "$cmd" proto "$@"
