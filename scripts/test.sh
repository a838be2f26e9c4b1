#!/usr/bin/env bash
# Runs every test of the workspace against real servers.
#
#   scripts/test.sh [extra cargo-nextest arguments]
#
# 1. Brings up PostgreSQL, Redis, a Kafka-protocol broker (tansu) and an MLflow tracking
#    server on loopback with scripts/deps.sh: servers already answering are reused, missing
#    ones are installed and started with throwaway data, and stopped again at the end.
# 2. Checks the KServe v2 contract against the tritonclient package's own definitions.
# 3. Runs the whole workspace's tests with cargo-nextest (cargo test when it is missing).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/stockcast"
VENV="${STOCKCAST_VENV:-$CACHE_DIR/venv}"

# This run's own state dir, so that stopping at the end touches only what this run started.
if [[ -z "${STOCKCAST_STATE_DIR:-}" ]]; then
  STOCKCAST_STATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/stockcast-test.XXXXXX")
  export STOCKCAST_STATE_DIR
fi

stop_deps() { "$ROOT/scripts/deps.sh" down || true; }
trap stop_deps EXIT

echo "== dependencies"
"$ROOT/scripts/deps.sh" up
# shellcheck disable=SC1091
source "$STOCKCAST_STATE_DIR/env"

echo "== python tools ($VENV)"
if ! "$VENV/bin/python" -c 'import tritonclient.grpc, grpc_tools' >/dev/null 2>&1; then
  "$VENV/bin/pip" install --quiet 'tritonclient[grpc]' grpcio-tools
fi

echo "== KServe v2 contract against tritonclient"
"$VENV/bin/python" "$ROOT/scripts/check-kserve-proto.py"

echo "== workspace tests"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
