#!/usr/bin/env bash
# Runs every check and test of moat: formatting, clippy, the crypto-provider
# rule, and the whole test suite (unit and integration tests that drive the
# real binary with openssl and psql over loopback).
# Installs the Debian packages the tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v psql >/dev/null || need+=(postgresql-client)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Builds outside the clone can be reused between runs and clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# One crypto provider for the whole binary: aws-lc-rs, never ring beside it.
if cargo tree --workspace -e normal --prefix none --format '{p}' | grep -q '^ring '; then
  echo "error: the ring crate is in the dependency tree; keep aws-lc-rs as the only crypto provider" >&2
  exit 1
fi
cargo test --workspace
