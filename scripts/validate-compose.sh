#!/usr/bin/env bash
# Validates docker-compose.yml (or the files given) against the Compose
# Specification JSON schema, without a Docker engine.
#
#   scripts/validate-compose.sh [FILE...]
#
# Uses check-jsonschema's vendored copy of the Compose Specification schema
# (--builtin-schema vendor.compose-spec: no network at validation time), installed
# into the project's tool virtualenv when missing:
#   STOCKCAST_VENV  (default ${XDG_CACHE_HOME:-$HOME/.cache}/stockcast/venv)
# Also checks that every file the compose file mounts from the repository exists.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/stockcast"
venv="${STOCKCAST_VENV:-$cache_dir/venv}"

die() { echo "validate-compose: $*" >&2; exit 1; }

ensure_checker() {
  if [[ -x "$venv/bin/check-jsonschema" ]]; then
    return
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "validate-compose: creating virtualenv $venv" >&2
    python3 -m venv "$venv" || die "could not create $venv (is python3-venv installed?)"
  fi
  echo "validate-compose: installing check-jsonschema into $venv" >&2
  "$venv/bin/python" -m pip install --quiet check-jsonschema \
    || die "pip install check-jsonschema failed"
}

# Bind mounts with a relative source (./...) must exist in the repository.
check_mount_sources() {
  local file="$1" dir src missing=0
  dir="$(dirname "$file")"
  while IFS= read -r src; do
    if [[ ! -e "$dir/$src" ]]; then
      echo "validate-compose: $file mounts $src, which does not exist" >&2
      missing=1
    fi
  done < <(sed -nE 's/^[[:space:]]*-[[:space:]]*"?(\.\.?\/[^:"]+):.*$/\1/p' "$file")
  return "$missing"
}

main() {
  local files=("$@") f status=0
  if [[ ${#files[@]} -eq 0 ]]; then
    files=("$repo_root/docker-compose.yml")
  fi
  ensure_checker
  for f in "${files[@]}"; do
    [[ -f "$f" ]] || die "no such file: $f"
    if "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$f" \
      && check_mount_sources "$f"; then
      echo "validate-compose: $f is valid (Compose Specification)"
    else
      echo "validate-compose: $f is NOT valid" >&2
      status=1
    fi
  done
  return "$status"
}

main "$@"
