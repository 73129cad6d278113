#!/usr/bin/env bash
# The main job, runnable on a fresh machine. Until `moat demo` (a secure
# 3-node cluster on loopback) exists, this is a walk-through of the
# certificate toolkit: it builds moat, makes a CockroachDB-layout certs
# directory in a temporary folder, signs a CSR, lists and verifies it all with
# openssl, then removes the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
cargo build --release --quiet -p moat-cli
moat="$CARGO_TARGET_DIR/release/moat"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
certs="$work/certs"
mkdir -m 700 "$work/safe"
run() { printf '\n$ %s\n' "$*" | sed "s#$work#\$WORK#g; s#$moat#moat#g"; "$@"; }

run "$moat" cert create-ca --certs-dir "$certs" --ca-key "$work/safe/ca.key"
run "$moat" cert create-node --certs-dir "$certs" --ca-key "$work/safe/ca.key" localhost 127.0.0.1 ::1
run "$moat" cert create-client --certs-dir "$certs" --ca-key "$work/safe/ca.key" root
run "$moat" cert create-client --certs-dir "$certs" --ca-key "$work/safe/ca.key" --key-type ed25519 alice

# The CSR workflow: the key is made where it is used and never travels.
mkdir -m 700 "$work/console"
run "$moat" cert create-csr --certs-dir "$work/console" ui console.example.com
run "$moat" cert sign-csr --certs-dir "$certs" --ca-key "$work/safe/ca.key" "$work/console/ui.csr" --profile ui --host console.example.com
run cp "$work/console/ui.crt" "$work/console/ui.key" "$certs/"

run "$moat" cert list --certs-dir "$certs" --format table
run openssl verify -CAfile "$certs/ca.crt" -purpose sslserver "$certs/node.crt" "$certs/ui.crt"
run openssl verify -CAfile "$certs/ca.crt" -purpose sslclient "$certs/client.root.crt" "$certs/client.alice.crt"
echo
echo "The certs directory above uses CockroachDB's layout: a CockroachDB node or client can use it as is."
