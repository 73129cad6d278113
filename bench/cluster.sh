#!/usr/bin/env bash
# Replicated writes (issue 5): a 3-node moat cluster on loopback (every write
# committed by a majority through Raft, over mutual TLS between nodes) next
# to a one-node moat and PostgreSQL 15 (fsync on, synchronous_commit on), all
# serving TLS with the same certificates and authenticating root by
# certificate, driven by the same pgbench script:
#   INSERT INTO w (v) VALUES ('...')   -- one autocommit write per transaction
# with 1 and 8 clients, through the leader and through a follower (which
# forwards to the leader). Reports TPS and mean latency (medians of REPS runs).
# The RPC-level comparison (mTLS vs plaintext) is `cargo bench -p moat-server
# --bench rpc`.
#
#   bash bench/cluster.sh
#
# Needs postgresql-15 / postgresql-client-15 (installed with apt if missing);
# builds the release binary; works in a temporary directory (removed unless
# KEEP=1); listens on 127.0.0.1 only. SECS (15) per run, REPS (3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECS="${SECS:-15}"
REPS="${REPS:-3}"
PGBIN=/usr/lib/postgresql/15/bin
log() { printf '== %s\n' "$*" >&2; }

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if [ ! -x "$PGBIN/postgres" ] || [ ! -x "$PGBIN/pgbench" ]; then
    log "installing postgresql-15 with apt"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
fi

log "building moat (release)"
cargo build --release -p moat-cli >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/moat-bench-cluster.XXXXXX")"
chmod 0711 "$WORK"
cp "${target_dir:-target}/release/moat" "$WORK/moat"
MOAT="$WORK/moat"
PIDS=()
PG_STARTED=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "$PG_STARTED" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w stop >/dev/null 2>&1
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

C="$WORK/certs"
"$MOAT" cert create-ca --certs-dir "$C" --ca-key "$WORK/ca.key" >/dev/null
"$MOAT" cert create-node --certs-dir "$C" --ca-key "$WORK/ca.key" localhost 127.0.0.1 >/dev/null
"$MOAT" cert create-client --certs-dir "$C" --ca-key "$WORK/ca.key" root >/dev/null
CL="$WORK/client"
mkdir -p "$CL"
cp "$C/ca.crt" "$C/client.root.crt" "$C/client.root.key" "$CL/"
export PGSSLMODE=verify-full PGSSLROOTCERT="$CL/ca.crt" PGSSLCERT="$CL/client.root.crt" \
    PGSSLKEY="$CL/client.root.key" PGHOST=localhost PGHOSTADDR=127.0.0.1 PGUSER=root \
    PGDATABASE=defaultdb PGGSSENCMODE=disable PGCONNECT_TIMEOUT=20
PSQL="$PGBIN/psql"
wait_sql() {
    local i
    for i in $(seq 1 150); do
        "$PSQL" -X -q -At -p "$1" -c 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "no SQL on port $1" >&2
    tail -20 "$WORK"/*.log >&2
    exit 1
}

# --- a 3-node cluster ---------------------------------------------------------
P=("$(free_port)" "$(free_port)" "$(free_port)")
JOIN="127.0.0.1:${P[0]},127.0.0.1:${P[1]},127.0.0.1:${P[2]}"
for i in 0 1 2; do
    "$MOAT" start --certs-dir "$C" --store "$WORK/n$i" --listen-addr "127.0.0.1:${P[$i]}" \
        --http-addr off --join "$JOIN" >"$WORK/n$i.log" 2>&1 &
    PIDS+=($!)
done
"$MOAT" init --certs-dir "$C" --host "127.0.0.1:${P[0]}" >&2
for p in "${P[@]}"; do wait_sql "$p"; done
for i in $(seq 1 100); do
    live="$("$MOAT" node ls --certs-dir "$C" --host "127.0.0.1:${P[0]}" --format tsv | grep -c $'\tt$' || true)"
    [ "$live" = 3 ] && break
    sleep 0.3
done
LEADER_PORT="${P[0]}"
FOLLOWER_PORT="${P[1]}"
"$MOAT" node status --certs-dir "$C" --host "127.0.0.1:${P[0]}" >&2

# --- one moat node -------------------------------------------------------------
S="$(free_port)"
"$MOAT" start-single-node --certs-dir "$C" --store "$WORK/single" --listen-addr "127.0.0.1:$S" \
    --http-addr off >"$WORK/single.log" 2>&1 &
PIDS+=($!)
wait_sql "$S"

# --- PostgreSQL 15 ---------------------------------------------------------------
G="$(free_port)"
PGD="$WORK/pg"
mkdir -p "$PGD/tls" "$PGD/sock"
cp "$C/node.crt" "$C/node.key" "$C/ca.crt" "$PGD/tls/"
chown -R postgres:postgres "$PGD"
chmod 0700 "$PGD" "$PGD/tls"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGD/data" -U postgres --auth-local=trust --auth-host=reject \
    --no-instructions >"$WORK/initdb.log" 2>&1
cat >>"$PGD/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $G
unix_socket_directories = '$PGD/sock'
ssl = on
ssl_cert_file = '$PGD/tls/node.crt'
ssl_key_file = '$PGD/tls/node.key'
ssl_ca_file = '$PGD/tls/ca.crt'
CONF
printf 'local all postgres trust\nhostssl all root 127.0.0.1/32 cert\n' >"$PGD/data/pg_hba.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGD/data" -l "$PGD/server.log" -w -t 60 start >/dev/null
PG_STARTED=1
runuser -u postgres -- env -u PGHOSTADDR -u PGSSLMODE -u PGDATABASE -u PGUSER "$PSQL" -X -q -h "$PGD/sock" -p "$G" \
    -U postgres -d postgres -c 'CREATE ROLE root SUPERUSER LOGIN' -c 'CREATE DATABASE defaultdb OWNER root' >/dev/null

for port in "$LEADER_PORT" "$S"; do
    "$PSQL" -X -q -p "$port" -c 'CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT)' >/dev/null
done
"$PSQL" -X -q -p "$G" -c 'CREATE TABLE w (id SERIAL PRIMARY KEY, v TEXT)' >/dev/null
echo "INSERT INTO w (v) VALUES ('a replicated write');" >"$WORK/insert.sql"

run() { # port clients -> "tps latency_ms"
    "$PGBIN/pgbench" -n -f "$WORK/insert.sql" -c "$2" -j "$2" -T "$SECS" -p "$1" 2>/dev/null |
        awk '/^latency average/ {lat=$4} /^tps/ {tps=$3} END {printf "%.0f %.2f\n", tps, lat}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A TPS LAT
for rep in $(seq 1 "$REPS"); do
    for clients in 1 8; do
        for target in leader follower single postgres; do
            case $target in
                leader) port=$LEADER_PORT ;; follower) port=$FOLLOWER_PORT ;;
                single) port=$S ;; postgres) port=$G ;;
            esac
            read -r t l < <(run "$port" "$clients")
            log "rep $rep, $clients clients, $target: $t TPS, $l ms"
            TPS[$target.$clients]+="$t "
            LAT[$target.$clients]+="$l "
        done
    done
done

rows="$("$PSQL" -X -At -p "$FOLLOWER_PORT" -c 'SELECT count(*) FROM w')"
rows3="$("$PSQL" -X -At -p "${P[2]}" -c 'SELECT count(*) FROM w')"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pgbench -n -f insert.sql -T $SECS, medians of $REPS runs; rows on node 2 / node 3 afterwards: $rows / $rows3"
echo
echo "| target | clients | TPS | mean latency (ms) |"
echo "|---|---|---|---|"
for clients in 1 8; do
    for target in leader follower single postgres; do
        t="$(echo ${TPS[$target.$clients]} | tr ' ' '\n' | median)"
        l="$(echo ${LAT[$target.$clients]} | tr ' ' '\n' | median)"
        case $target in
            leader) name="3-node moat, via the leader" ;; follower) name="3-node moat, via a follower" ;;
            single) name="1-node moat" ;; postgres) name="PostgreSQL 15 (fsync, synchronous_commit on)" ;;
        esac
        echo "| $name | $clients | $t | $l |"
    done
done
