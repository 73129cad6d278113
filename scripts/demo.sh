#!/usr/bin/env bash
# The main job, runnable on a fresh machine: `moat demo`, a secure 3-node
# cluster on loopback. It builds moat (release) and runs `moat demo`, which
# makes a fresh CA (its key outside the certs directory), node and client
# certificates in a temporary directory, starts 3 nodes, initialises the
# cluster and creates user `demo` with a generated password. This script then
# logs in with a client certificate (moat sql, psql) and with the password
# over one-sided TLS (psql, SCRAM with channel binding), shows a write on
# node 1 read on node 3, what is refused and why, and the HTTPS console; then
# stops the demo (SIGTERM), which removes its temporary directory.
#
#   ./scripts/demo.sh           the walkthrough above; exits by itself
#   ./scripts/demo.sh --keep    the same, then leaves the cluster running until Ctrl-C
#   ./scripts/demo.sh --shell   just `moat demo`: the cluster and a SQL shell as root
#                               (\q or Ctrl-D stops it; everything is removed)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in
  "" | --keep | --shell) ;;
  *) echo "usage: $0 [--keep | --shell]" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
echo "building moat (release) ..."
cargo build --release --quiet -p moat-cli
moat="$CARGO_TARGET_DIR/release/moat"

if [ "$mode" = --shell ]; then
  exec "$moat" demo
fi

# This script's own scratch space (an empty HOME for psql, the console's
# cookie jar, the demo's output); `moat demo` makes and removes its own.
work=$(mktemp -d)
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -m 700 "$work/home"

echo
echo "== 1. moat demo --no-shell: certificates, 3 nodes, init, user demo"
echo "\$ moat demo --no-shell"
"$moat" demo --no-shell >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
for _ in $(seq 600); do
  grep -q "Press Ctrl-C" "$work/demo.out" 2>/dev/null && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "Press Ctrl-C" "$work/demo.out"; then
  cat "$work/demo.out" "$work/demo.err" >&2
  echo "moat demo did not come up (see above)" >&2
  exit 1
fi
cat "$work/demo.out"

dir=$(sed -n 's/^# Temporary directory (removed when the demo stops): //p' "$work/demo.out")
certs="$dir/certs"
root_url=$(grep -o 'postgresql://root@[^"]*' "$work/demo.out" | head -1)
demo_url=$(grep -o 'postgresql://demo:[^"]*' "$work/demo.out" | head -1)
password=$(sed -n 's#.*postgresql://demo:\([^@]*\)@.*#\1#p' <<<"$demo_url")
mapfile -t sql_addrs < <(sed -n 's/^# node [0-9]*: SQL \([^ ]*\) .*/\1/p' "$work/demo.out")
mapfile -t http_addrs < <(sed -n 's#^.*console https://\([^/]*\)/$#\1#p' "$work/demo.out")
first=${sql_addrs[0]}
last=${sql_addrs[${#sql_addrs[@]}-1]}
host_of() { echo "${1%:*}"; }
port_of() { echo "${1##*:}"; }

show() { printf '\n$ %s\n' "$*" | sed "s#$dir#\$DEMO#g; s#$moat#moat#g; s#$password#\$PASSWORD#g"; }
run() { show "$@"; "$@"; }
# moat with an empty HOME and none of the user's MOAT_* settings.
moat_clean() { env -u MOAT_URL -u MOAT_HOST -u MOAT_PORT -u MOAT_USER -u MOAT_DATABASE -u MOAT_CERTS_DIR HOME="$work/home" "$moat" "$@"; }
sql() { moat_clean sql --certs-dir "$certs" "$@"; }
have_psql=0
command -v psql >/dev/null && have_psql=1
# psql with an empty HOME (no ~/.postgresql) and a clean libpq environment.
# No pager: the walkthrough must not stop for a keypress on a terminal.
psql_clean() { env -u PGPASSWORD -u PGSSLMODE -u PGHOST -u PGPORT -u PGUSER HOME="$work/home" psql -P pager=off "$@"; }

echo
echo "== 2. The cluster, as root by client certificate (mutual TLS)"
show moat node ls --certs-dir "$certs" --host "$first"
moat_clean node ls --certs-dir "$certs" --host "$first"
show moat sql --certs-dir '$DEMO/certs' --host "$first" -e "CREATE TABLE accounts ..." -e "INSERT ..."
sql --host "$first" -e "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance REAL)" \
  -e "INSERT INTO accounts VALUES (1, 'alice', 100.5), (2, 'demo', 42)"
echo "# written on node 1 ($first), read on node ${#sql_addrs[@]} ($last): every write is replicated by Raft"
show moat sql --certs-dir "$certs" --host "$last" -e "SELECT * FROM accounts"
sql --host "$last" --format table -e "SELECT * FROM accounts"

echo
echo "== 3. User demo, by password over one-sided TLS (SCRAM-SHA-256 with channel binding)"
if [ "$have_psql" = 1 ]; then
  show psql "$demo_url&channel_binding=require" -c "SELECT current_user, version()"
  psql_clean "$demo_url&channel_binding=require" -X -c "SELECT current_user, version()"
  echo "# the same with root's certificate, from psql:"
  show psql "$root_url" -c "SELECT current_user"
  psql_clean "$root_url" -X -c "SELECT current_user"
else
  echo "# (psql is not installed: apt-get install postgresql-client; using moat sql with the same string)"
  show moat sql --url "$demo_url" --format table -e "SELECT current_user, version()"
  moat_clean sql --url "$demo_url" --format table -e "SELECT current_user, version()"
fi

echo
echo "== 4. What is refused"
if [ "$have_psql" = 1 ]; then
  h=$(host_of "$first")
  p=$(port_of "$first")
  echo "# plaintext:"
  psql_clean "host=$h port=$p user=root dbname=defaultdb sslmode=disable" -X -c "SELECT 1" 2>&1 | sed 's/^/  /' || true
  echo "# demo's client certificate used to log in as root:"
  psql_clean "host=$h port=$p user=root dbname=defaultdb sslmode=verify-full sslrootcert=$certs/ca.crt sslcert=$certs/client.demo.crt sslkey=$certs/client.demo.key" \
    -X -c "SELECT 1" 2>&1 | sed "s#$dir#\$DEMO#g; s/^/  /" || true
  echo "# a wrong password:"
  psql_clean "${demo_url/demo:$password@/demo:wrong@}" -X -c "SELECT 1" 2>&1 | sed "s#$dir#\$DEMO#g; s/^/  /" || true
fi
echo "# user SQL cannot read password verifiers:"
sql --host "$first" -e "SELECT * FROM moat_users" 2>&1 | sed 's/^/  /' || true
echo "# only root lists the nodes:"
moat_clean sql --url "$demo_url" -e "SHOW NODES" 2>&1 | sed 's/^/  /' || true

if command -v curl >/dev/null; then
  http=${http_addrs[0]}
  hp=$(port_of "$http")
  echo
  echo "== 5. The HTTPS console (node 1: https://$http/)"
  echo "# /health answers in clear for load balancers; plain HTTP elsewhere is redirected to HTTPS:"
  run curl -sS "http://$http/health"
  echo
  run curl -sS -o /dev/null -w "%{http_code} -> %{redirect_url}\n" "http://$http/certificates/local"
  echo "# log in as demo (password checked against the SCRAM verifier) and list the nodes:"
  jar="$work/cookies"
  curl -sS --cacert "$certs/ca.crt" --resolve "localhost:$hp:127.0.0.1" -c "$jar" -o /dev/null \
    -d "username=demo&password=$password" "https://localhost:$hp/login"
  printf '\n$ curl --cacert ca.crt -b cookies https://localhost:%s/_status/nodes | (first bytes)\n' "$hp"
  curl -sS --cacert "$certs/ca.crt" --resolve "localhost:$hp:127.0.0.1" -b "$jar" "https://localhost:$hp/_status/nodes" | head -c 400
  echo
fi

echo
echo "The certs directory uses CockroachDB's layout: a CockroachDB node or client can use it as is."
if [ "$mode" = --keep ]; then
  echo
  echo "The cluster keeps running: moat sql --certs-dir $certs --host $first"
  echo "Press Ctrl-C to stop it; moat demo then removes $dir."
  trap 'kill -TERM "$demo_pid" 2>/dev/null || true' INT
  while kill -0 "$demo_pid" 2>/dev/null; do wait "$demo_pid" || true; done
  demo_pid=""
  cat "$work/demo.err"
else
  echo
  echo "== 6. Stopping: SIGTERM to moat demo stops the nodes and removes its directory"
  kill -TERM "$demo_pid"
  wait "$demo_pid" || true
  demo_pid=""
  sed "s#$dir#\$DEMO#g" "$work/demo.err"
  if [ -e "$dir" ]; then echo "error: $dir was not removed" >&2; exit 1; fi
  echo "# \$DEMO is gone."
fi
