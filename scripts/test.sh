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
command -v sslscan >/dev/null || need+=(sslscan)
command -v strace >/dev/null || need+=(strace)
# The console tests: curl, promtool (from Debian's prometheus package) and
# headless Chromium.
command -v curl >/dev/null || need+=(curl)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# psycopg 3, for the Python driver test.
if ! python3 -c "import psycopg" 2>/dev/null; then
  echo "installing psycopg[binary]"
  python3 -m pip install -q "psycopg[binary]"
fi

# Builds outside the clone can be reused between runs and clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# One crypto provider for TLS: aws-lc-rs. No crate may turn on a rustls,
# webpki, rcgen or tokio-rustls "ring" feature. ring itself is only allowed as
# the private dependency of x509-certificate (which pgwire uses to hash the
# server certificate for SCRAM channel binding), never as a TLS provider.
if cargo tree --workspace -e features --prefix none 2>/dev/null \
    | grep -E '^(rustls|rustls-webpki|rcgen|tokio-rustls|x509-parser) feature "ring"'; then
  echo "error: a rustls-side crate has its ring feature on; keep aws-lc-rs as the only TLS provider" >&2
  exit 1
fi
ring_users=$(cargo tree --workspace -e normal -i ring --prefix none --depth 1 2>/dev/null | grep -v '^ring ' | sort -u || true)
if [ -n "$ring_users" ] && [ "$(echo "$ring_users" | cut -d' ' -f1 | sort -u)" != "x509-certificate" ]; then
  echo "error: ring is pulled in by: $ring_users" >&2
  exit 1
fi
cargo test --workspace
