#!/usr/bin/env bash
# The SQL node next to PostgreSQL 15 (issue 4): both serve TLS with the SAME
# certificates (made by `moat cert`) and authenticate `root` by client
# certificate; the same client (pgbench / libpq, psycopg 3) drives both,
# interleaved in the same run. Measures
#   (a) pgbench -C: a new TLS connection + cert auth per transaction:
#       connections per second and SERVER CPU per connection (utime+stime
#       from /proc, children included for PostgreSQL);
#   (b) steady-state TPS over TLS (connections kept): SELECT 1, and a
#       read + write on a small table;
#   (c) memory per idle TLS connection with 5,000 idle connections
#       (bench/idle_conns.py).
# Prints a markdown summary (the figures in docs/benchmarks.md come from it).
#
#   bash bench/sql.sh
#
# Installs postgresql-15 / postgresql-client-15 with apt and psycopg 3 with
# pip if they are missing, builds the release binary, works only in a
# temporary directory (removed on exit unless KEEP=1), listens on 127.0.0.1
# only, stops its servers on exit and stops by itself. Environment:
# CARGO_TARGET_DIR is honoured; SECS (20) is the length of each pgbench run;
# REPS (3) the number of interleaved repetitions (medians are reported);
# IDLE (5000) / PG_IDLE (IDLE) the idle connections for (c), 0 skips;
# KEY_TYPE (ecdsa-p256) the key type of every certificate; ONLY=a,b,c picks
# parts.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

SECS="${SECS:-20}"
REPS="${REPS:-3}"
IDLE="${IDLE:-5000}"
PG_IDLE="${PG_IDLE:-$IDLE}"
KEY_TYPE="${KEY_TYPE:-ecdsa-p256}"
ONLY="${ONLY:-a,b,c}"
PGBIN=/usr/lib/postgresql/15/bin

log() { printf '== %s\n' "$*" >&2; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# --- tools -------------------------------------------------------------------
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
need_pkgs=()
[ -x "$PGBIN/postgres" ] || need_pkgs+=(postgresql-15)
[ -x "$PGBIN/pgbench" ] || command -v pgbench >/dev/null 2>&1 || need_pkgs+=(postgresql-client-15)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3 python3-pip)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} with apt"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# Debian's postgresql-common starts a "main" cluster on install: it listens on
# 5432 and is left alone (our cluster uses its own port and directory).
PGBENCH="$PGBIN/pgbench"
[ -x "$PGBENCH" ] || PGBENCH="$(command -v pgbench)"
PSQL="$PGBIN/psql"
[ -x "$PSQL" ] || PSQL="$(command -v psql)"
if want c && ! python3 -c 'import psycopg' 2>/dev/null; then
    log "installing psycopg 3 with pip"
    python3 -m pip install -q 'psycopg[binary]' >&2 ||
        python3 -m pip install -q --break-system-packages 'psycopg[binary]' >&2
fi
id postgres >/dev/null 2>&1 || { echo "no postgres user (postgresql-15 should create it)" >&2; exit 1; }

log "building moat (release)"
cargo build --release -p moat-cli >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
MOAT="${target_dir:-target}/release/moat"
[ -x "$MOAT" ] || { echo "moat binary not found at $MOAT" >&2; exit 1; }

# 5,000 idle connections need as many descriptors in moat and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE + 200)) ]; then
    echo "ulimit -n is $(ulimit -n): too low for IDLE=$IDLE" >&2
    exit 1
fi

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/moat-bench-sql.XXXXXX")"
chmod 0711 "$WORK" # postgres must reach $WORK/pg
# A private copy: a rebuild elsewhere during the run cannot change what is measured.
cp "$MOAT" "$WORK/moat"
MOAT="$WORK/moat"
MOAT_PID=""
PG_STARTED=""
stop_moat() {
    if [ -n "$MOAT_PID" ]; then
        kill "$MOAT_PID" 2>/dev/null || true
        wait "$MOAT_PID" 2>/dev/null || true
        MOAT_PID=""
    fi
}
stop_pg() {
    if [ -n "$PG_STARTED" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        PG_STARTED=""
    fi
}
cleanup() {
    stop_moat
    stop_pg
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TCK="$(getconf CLK_TCK)"
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- certificates: one directory for both servers ------------------------------
C="$WORK/certs"
log "certificates ($KEY_TYPE) with $MOAT cert"
"$MOAT" cert create-ca --certs-dir "$C" --ca-key "$WORK/ca.key" --key-type "$KEY_TYPE" >/dev/null
"$MOAT" cert create-node --certs-dir "$C" --ca-key "$WORK/ca.key" --key-type "$KEY_TYPE" localhost 127.0.0.1 >/dev/null
"$MOAT" cert create-client --certs-dir "$C" --ca-key "$WORK/ca.key" --key-type "$KEY_TYPE" root >/dev/null

# The client gets its own copy of what it needs (as a real client would):
# libpq reads its files on every connection, and moat watches its certs
# directory (inotify) for reloads, which would count the client's reads as
# server work.
CL="$WORK/client"
mkdir -p "$CL"
cp "$C/ca.crt" "$C/client.root.crt" "$C/client.root.key" "$CL/"
chmod 0600 "$CL/client.root.key"
# The same client settings for both servers: verify-full against ca.crt with
# the name localhost, client certificate for root, TCP to 127.0.0.1.
export PGSSLMODE=verify-full PGSSLROOTCERT="$CL/ca.crt" PGSSLCERT="$CL/client.root.crt" \
    PGSSLKEY="$CL/client.root.key" PGHOST=localhost PGHOSTADDR=127.0.0.1 PGUSER=root \
    PGDATABASE=defaultdb PGGSSENCMODE=disable PGCONNECT_TIMEOUT=20
unset PGPASSWORD PGSERVICE PGSSLCRL 2>/dev/null || true

# --- PostgreSQL 15 ---------------------------------------------------------------
PG_PORT="$(free_port)"
PGD="$WORK/pg"
mkdir -p "$PGD/tls" "$PGD/sock"
cp "$C/node.crt" "$PGD/tls/node.crt"
cp "$C/node.key" "$PGD/tls/node.key"
cp "$C/ca.crt" "$PGD/tls/ca.crt"
chown -R postgres:postgres "$PGD"
chmod 0700 "$PGD" "$PGD/tls"
chmod 0600 "$PGD/tls/node.key"
log "PostgreSQL 15: initdb, TLS on, port $PG_PORT"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGD/data" -U postgres --auth-local=trust --auth-host=reject \
    --no-instructions >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
PG_MAXCONN=$((PG_IDLE + 200))
[ "$PG_MAXCONN" -ge 100 ] || PG_MAXCONN=100
cat >>"$PGD/data/postgresql.conf" <<EOF
# bench/sql.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGD/sock'
max_connections = $PG_MAXCONN
ssl = on
ssl_cert_file = '$PGD/tls/node.crt'
ssl_key_file = '$PGD/tls/node.key'
ssl_ca_file = '$PGD/tls/ca.crt'
EOF
cat >"$PGD/data/pg_hba.conf" <<EOF
local   all  postgres               trust
hostssl all  root      127.0.0.1/32 cert
EOF
chown postgres:postgres "$PGD/data/pg_hba.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGD/data" -l "$PGD/server.log" -w -t 60 start >/dev/null
PG_STARTED=1
PG_PID="$(head -1 "$PGD/data/postmaster.pid")"
runuser -u postgres -- env -u PGHOSTADDR -u PGSSLMODE -u PGDATABASE -u PGUSER "$PSQL" -X -q -h "$PGD/sock" -p "$PG_PORT" -U postgres -d postgres \
    -c 'CREATE ROLE root SUPERUSER LOGIN' -c 'CREATE DATABASE defaultdb OWNER root' >/dev/null
PG_VERSION="$("$PSQL" -X -At -p "$PG_PORT" -c 'SHOW server_version')"
PG_SSL="$("$PSQL" -X -At -p "$PG_PORT" -c 'SELECT concat_ws(chr(32), version, cipher) FROM pg_stat_ssl WHERE pid = pg_backend_pid()')"

# --- moat ----------------------------------------------------------------------------
MOAT_PORT="$(free_port)"
# No console (--http-addr off): another node on this machine may hold :8080.
start_moat() {
    "$MOAT" start-single-node --certs-dir "$C" --store "$WORK/store" \
        --listen-addr "127.0.0.1:$MOAT_PORT" --http-addr off --max-connections 6000 >>"$WORK/moat.log" 2>&1 &
    MOAT_PID=$!
    local i
    for i in $(seq 1 150); do
        if "$PSQL" -X -q -At -p "$MOAT_PORT" -c 'SELECT 1' >/dev/null 2>&1; then return 0; fi
        kill -0 "$MOAT_PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "moat did not start; its log:" >&2
    tail -20 "$WORK/moat.log" >&2
    exit 1
}
log "moat: start-single-node on port $MOAT_PORT"
start_moat
MOAT_SSL="$(timeout 10 openssl s_client -connect "127.0.0.1:$MOAT_PORT" -starttls postgres </dev/null 2>/dev/null |
    sed -n 's/^New, \(.*\), Cipher is \(.*\)$/\1 \2/p' | head -1 || true)"

# The table for the read/write script, the same in both.
for port in "$PG_PORT" "$MOAT_PORT"; do
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -p "$port" >/dev/null <<'EOF'
CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);
WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 1000)
INSERT INTO kv SELECT g, 'v' || g FROM s;
EOF
done

printf 'SELECT 1;\n' >"$WORK/select1.sql"
cat >"$WORK/kv.sql" <<'EOF'
\set k random(1, 1000)
\set r random(1, 1000000000)
SELECT v FROM kv WHERE k = :k;
UPDATE kv SET v = :r WHERE k = :k;
EOF
# (A new value every time: SQLite skips rewriting a row whose content is
# unchanged, so a constant value would make moat's updates no-ops on disk.)

# --- server CPU from /proc ------------------------------------------------------------
# Fields after "(comm) ": $12..$15 are utime, stime, cutime, cstime (14-17).
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk -v all="$2" '{ print $12 + $13 + (all ? $14 + $15 : 0) }'; }
server_ticks() { # moat|pg
    if [ "$1" = moat ]; then
        proc_ticks "$MOAT_PID" 0
    else
        # The postmaster, the backends it has reaped (cutime/cstime), and its
        # live children (checkpointer, walwriter, ..., backends still running).
        local total p
        total="$(proc_ticks "$PG_PID" 1)"
        for p in $(pgrep -P "$PG_PID" || true); do
            total=$((total + $(proc_ticks "$p" 1 || echo 0)))
        done
        echo "$total"
    fi
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
# run <test> <server> <rep> <pgbench args...>
run() {
    local test="$1" server="$2" rep="$3" port t0 t1 out n tps
    shift 3
    if [ "$server" = moat ]; then port="$MOAT_PORT"; else port="$PG_PORT"; fi
    t0="$(server_ticks "$server")"
    out="$(PGPORT="$port" timeout $((SECS + 60)) "$PGBENCH" "$@" 2>&1)" || {
        echo "pgbench failed against $server ($test):" >&2
        echo "$out" | tail -5 >&2
    }
    sleep 1 # the last backends exit and are reaped
    t1="$(server_ticks "$server")"
    n="$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')"
    tps="$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$test" "$server" "$rep" "${tps:-0}" "${n:-0}" "$((t1 - t0))" >>"$RESULTS"
    log "$(printf '%-8s %-4s rep %s: %8s tps, %7s transactions, %5s server ticks' "$test" "$server" "$rep" "${tps:-?}" "${n:-?}" "$((t1 - t0))")"
}

# Interleaved: odd repetitions PostgreSQL first, even ones moat first.
order() { if (($1 % 2)); then echo "pg moat"; else echo "moat pg"; fi; }
for rep in $(seq 1 "$REPS"); do
    for s in $(order "$rep"); do
        if want a; then run connect "$s" "$rep" -n -C -f "$WORK/select1.sql" -T "$SECS" -c 4 -j 2; fi
    done
    for s in $(order $((rep + 1))); do
        if want b; then
            run select1 "$s" "$rep" -n -M simple -f "$WORK/select1.sql" -T "$SECS" -c 4 -j 2
            run kv "$s" "$rep" -n -M extended -f "$WORK/kv.sql" -T "$SECS" -c 4 -j 2
        fi
    done
done

# --- (c) idle connections -------------------------------------------------------------
IDLE_OUT="$WORK/idle.jsonl"
: >"$IDLE_OUT"
if want c && [ "$IDLE" -gt 0 ]; then
    # A fresh moat, so memory freed by (a) and (b) and kept by the allocator
    # does not hide what the idle connections take.
    for q in "" --query; do
        stop_moat
        start_moat
        log "(c) moat: $IDLE idle connections ${q:-(no query)}"
        timeout 900 python3 "$REPO/bench/idle_conns.py" --kind moat --pid "$MOAT_PID" --port "$MOAT_PORT" \
            --certs "$CL" -n "$IDLE" $q >>"$IDLE_OUT" || log "idle run against moat incomplete"
    done
    if [ "$PG_IDLE" -gt 0 ]; then
        for q in "" --query; do
            log "(c) PostgreSQL: $PG_IDLE idle connections ${q:-(no query)}"
            timeout 1200 python3 "$REPO/bench/idle_conns.py" --kind postgres --pid "$PG_PID" --port "$PG_PORT" \
                --certs "$CL" -n "$PG_IDLE" $q >>"$IDLE_OUT" || log "idle run against PostgreSQL incomplete"
        done
    fi
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- summary ---------------------------------------------------------------------------
MACHINE="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
export MACHINE TCK SECS REPS KEY_TYPE PG_VERSION PG_SSL MOAT_SSL load_before load_after RESULTS IDLE_OUT
export MOAT_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet 2>/dev/null || echo '+dirty')"
python3 - <<'EOF'
import json, os, statistics as st
E = os.environ
tck = int(E["TCK"])
rows = [l.split("\t") for l in open(E["RESULTS"]).read().splitlines() if l]
by = {}
for test, server, rep, tps, n, ticks in rows:
    by.setdefault((test, server), []).append((float(tps), int(n), int(ticks)))
def med(test, server, f):
    v = [f(*r) for r in by.get((test, server), []) if r[1] > 0]
    return st.median(v) if v else float("nan")
tps = lambda t, n, k: t
cpu_ms = lambda t, n, k: k * 1000.0 / tck / n
cpu_us = lambda t, n, k: k * 1e6 / tck / n
def ratio(test, f):
    v = [f(*p) / f(*m) for p, m in zip(by.get((test, "pg"), []), by.get((test, "moat"), []))
         if p[1] and m[1] and f(*m) > 0]
    return st.median(v) if v else float("nan")
def faster(test):  # moat's rate over PostgreSQL's
    return f"moat {1 / ratio(test, tps):.2f}× the rate"
def cheaper(test, f):
    r = ratio(test, f)
    return f"moat uses {r:.1f}× less" if r >= 1 else f"moat uses {1 / r:.2f}× more"
print(f"## SQL node vs PostgreSQL 15 (issue 4)\n")
print(f"- machine: {E['MACHINE']}; load average {E['load_before']} before, {E['load_after']} after")
print(f"- moat {E['MOAT_REV']}; PostgreSQL {E['PG_VERSION']}; certificates {E['KEY_TYPE']} from `moat cert`")
print(f"- TLS negotiated: PostgreSQL {E['PG_SSL']}; moat {E['MOAT_SSL'] or '?'}")
print(f"- {E['REPS']} interleaved repetitions of {E['SECS']} s each; medians (comparisons are medians of per-repetition ratios)\n")
if by:
    print("| test | PostgreSQL 15 | moat | comparison (same repetition) |")
    print("|---|---:|---:|---|")
    if ("connect", "moat") in by:
        print(f"| (a) `-C`: connections/s | {med('connect','pg',tps):.0f} | {med('connect','moat',tps):.0f} | {faster('connect')} |")
        print(f"| (a) `-C`: server CPU per connection | {med('connect','pg',cpu_ms):.3f} ms | {med('connect','moat',cpu_ms):.3f} ms | {cheaper('connect', cpu_ms)} |")
    for t, label in [("select1", "`SELECT 1`, simple protocol"), ("kv", "kv read + update, extended protocol")]:
        if (t, "moat") in by:
            print(f"| (b) {label}: TPS | {med(t,'pg',tps):.0f} | {med(t,'moat',tps):.0f} | {faster(t)} |")
            print(f"| (b) {label}: server CPU per transaction | {med(t,'pg',cpu_us):.0f} µs | {med(t,'moat',cpu_us):.0f} µs | {cheaper(t, cpu_us)} |")
    print()
    print("Per run (test, server, repetition, tps, transactions, server CPU ticks at %d/s):\n" % tck)
    print("```")
    for r in rows:
        print("\t".join(r))
    print("```\n")
idle = [json.loads(l) for l in open(E["IDLE_OUT"]).read().splitlines() if l.strip()]
if idle:
    print("| (c) idle TLS connections | open | server memory before → after | KiB per connection |")
    print("|---|---:|---:|---:|")
    for r in idle:
        name = "moat (VmRSS)" if r["kind"] == "moat" else f"PostgreSQL (Pss summed over {r['after']['procs']} processes)"
        key = "rss_kib" if r["kind"] == "moat" else "pss_kib"
        per = r.get("rss_kib_per_conn" if r["kind"] == "moat" else "pss_kib_per_conn", float("nan"))
        extra = "" if r["kind"] == "moat" else f" (Rss sum: {r.get('rss_kib_per_conn', float('nan')):.0f})"
        q = "after one `SELECT 1`" if r["query"] else "right after auth"
        err = f"; {r['errors']} errors: {r['first_error']}" if r["errors"] else ""
        print(f"| {name}, {q}{err} | {r['open']} | {r['before'][key]} → {r['after'][key]} KiB | {per:.1f}{extra} |")
    print()
EOF
