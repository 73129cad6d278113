#!/usr/bin/env bash
# The main job, runnable on a fresh machine: a secure moat node on loopback.
# It builds moat, makes a CockroachDB-layout certs directory in a temporary
# folder (CA key kept outside it), starts `moat start-single-node`, logs in
# with a client certificate and with a password (moat sql and psql), shows
# what is refused and why, then stops the node and removes the folder.
# (Once clustering lands, this runs `moat demo`: a 3-node cluster.)
# Pass --keep to leave the node running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
[ "${1:-}" = "--keep" ] && keep=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
echo "building moat (release) ..."
cargo build --release --quiet -p moat-cli
moat="$CARGO_TARGET_DIR/release/moat"

work=$(mktemp -d)
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
certs="$work/certs"
mkdir -m 700 "$work/safe" "$work/home"
run() { printf '\n$ %s\n' "$*" | sed "s#$work#\$WORK#g; s#$moat#moat#g"; "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
http_port=$(free_port)

echo "== 1. Certificates (CockroachDB layout; the CA key stays in \$WORK/safe)"
run "$moat" cert create-ca --certs-dir "$certs" --ca-key "$work/safe/ca.key"
run "$moat" cert create-node --certs-dir "$certs" --ca-key "$work/safe/ca.key" localhost 127.0.0.1 ::1
run "$moat" cert create-client --certs-dir "$certs" --ca-key "$work/safe/ca.key" root
run "$moat" cert create-client --certs-dir "$certs" --ca-key "$work/safe/ca.key" --key-type ed25519 alice
run "$moat" cert list --certs-dir "$certs" --format table

echo
echo "== 2. A secure node (TLS only) on 127.0.0.1:$port"
"$moat" start-single-node --certs-dir "$certs" --store "$work/store" --listen-addr "127.0.0.1:$port" \
  --http-addr "127.0.0.1:$http_port" \
  >"$work/node.out" 2>"$work/node.log" &
node_pid=$!
for _ in $(seq 100); do grep -q "serving SQL" "$work/node.out" 2>/dev/null && break; sleep 0.1; done
cat "$work/node.out"

echo
echo "== 3. Logins"
sql() { "$moat" sql --certs-dir "$certs" --host "localhost:$port" "$@"; }
run sql -e "CREATE USER alice; CREATE USER demo WITH PASSWORD 'demo-password'"
run sql -e "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance REAL)" \
        -e "INSERT INTO accounts VALUES (1, 'alice', 100.5), (2, 'demo', 42)" \
        -e "SELECT * FROM accounts"
echo
echo "# alice, by her Ed25519 client certificate (mutual TLS):"
run sql --user alice -e "SELECT current_user, version()"
echo
echo "# demo, by password over one-sided TLS (SCRAM-SHA-256 with channel binding), from psql:"
conn="host=localhost port=$port user=demo dbname=defaultdb sslmode=verify-full sslrootcert=$certs/ca.crt channel_binding=require"
printf '\n$ PGPASSWORD=... psql "%s" -c "SELECT owner, balance FROM accounts"\n' "$(echo "$conn" | sed "s#$work#\$WORK#g")"
HOME="$work/home" PGPASSWORD=demo-password psql "$conn" -X -c "SELECT owner, balance FROM accounts"

echo
echo "== 4. What is refused"
echo "# plaintext:"
HOME="$work/home" psql "host=localhost port=$port user=root dbname=defaultdb sslmode=disable" -X -c "SELECT 1" 2>&1 | sed 's/^/  /' || true
echo "# alice's certificate used to log in as root:"
HOME="$work/home" psql "host=localhost port=$port user=root dbname=defaultdb sslmode=verify-full sslrootcert=$certs/ca.crt sslcert=$certs/client.alice.crt sslkey=$certs/client.alice.key" -X -c "SELECT 1" 2>&1 | sed "s#$work#\$WORK#g; s/^/  /" || true
echo "# a wrong password:"
HOME="$work/home" PGPASSWORD=wrong psql "$conn" -X -c "SELECT 1" 2>&1 | sed "s#$work#\$WORK#g; s/^/  /" || true
echo "# user SQL cannot read password verifiers:"
sql -e "SELECT * FROM moat_users" 2>&1 | sed 's/^/  /' || true

echo
echo "== 5. The HTTPS console"
echo "# /health answers in clear for load balancers; plain HTTP elsewhere is redirected to HTTPS:"
run curl -sS "http://127.0.0.1:$http_port/health"; echo
run curl -sS -o /dev/null -w "%{http_code} -> %{redirect_url}\n" "http://127.0.0.1:$http_port/certificates/local"
echo "# log in as demo (password checked against the SCRAM verifier) and read the certificates API:"
jar="$work/cookies"
curl -sS --cacert "$certs/ca.crt" -c "$jar" -o /dev/null -d "username=demo&password=demo-password" "https://localhost:$http_port/login" --resolve "localhost:$http_port:127.0.0.1"
printf '\n$ curl --cacert ca.crt -b cookies https://localhost:%s/_status/certificates | (first lines)\n' "$http_port"
curl -sS --cacert "$certs/ca.crt" -b "$jar" --resolve "localhost:$http_port:127.0.0.1" "https://localhost:$http_port/_status/certificates" | head -c 600; echo
echo "# certificate expiry metrics:"
curl -sS --cacert "$certs/ca.crt" --resolve "localhost:$http_port:127.0.0.1" "https://localhost:$http_port/_status/vars" | grep -E '^security_certificate_expiration_(ca|node) ' | sed 's/^/  /'

echo
echo "The certs directory uses CockroachDB's layout: a CockroachDB node or client can use it as is."
if [ "$keep" = 1 ]; then
  echo "Node running: $moat sql --certs-dir $certs --host localhost:$port"
  echo "Console: https://localhost:$http_port/ (trust $certs/ca.crt; log in as demo / demo-password)   Ctrl-C to stop"
  wait "$node_pid"
fi
