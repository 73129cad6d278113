#!/usr/bin/env bash
# Server CPU per TLS cert-auth connection (or per transaction) of two moat
# binaries, interleaved in one run: an A/B of a change (bench/sql.sh compares
# moat with PostgreSQL). Each binary runs `start-single-node` on its own port
# and store with the same certificates; pgbench drives each for SECS seconds,
# REPS times, alternating A and B. WORKLOAD=connect (default): `-n -C -f
# SELECT1 -c 4 -j 2`, a new connection per transaction. WORKLOAD=kv: kept
# connections, `-M extended`, bench/sql.sh's read + update of a random row of
# a 1,000-row table. WORKLOAD=read: the same without the update.
#
#   bash bench/connect_ab.sh OLD_MOAT NEW_MOAT
#
# Prints, per repetition, the CPU ms per connection (transaction) of each (utime+stime from
# /proc over connections) and the B/A ratio, then the medians. Needs pgbench
# (postgresql-client-15). Works in a temporary directory, listens on
# 127.0.0.1 only, stops its nodes on exit. SECS (10), REPS (5), KEY_TYPE
# (ecdsa-p256).
set -euo pipefail

A="$(realpath "${1:?usage: connect_ab.sh OLD_MOAT NEW_MOAT}")"
B="$(realpath "${2:?usage: connect_ab.sh OLD_MOAT NEW_MOAT}")"
SECS="${SECS:-10}"
WORKLOAD="${WORKLOAD:-connect}"
REPS="${REPS:-5}"
KEY_TYPE="${KEY_TYPE:-ecdsa-p256}"
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
[ -x "$PGBENCH" ] || PGBENCH="$(command -v pgbench)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/moat-connect-ab.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

C="$WORK/certs"
"$B" cert create-ca --certs-dir "$C" --ca-key "$WORK/ca.key" --key-type "$KEY_TYPE" >/dev/null
"$B" cert create-node --certs-dir "$C" --ca-key "$WORK/ca.key" --key-type "$KEY_TYPE" localhost 127.0.0.1 >/dev/null
"$B" cert create-client --certs-dir "$C" --ca-key "$WORK/ca.key" --key-type "$KEY_TYPE" root >/dev/null
mkdir "$WORK/client"
cp "$C/ca.crt" "$C/client.root.crt" "$C/client.root.key" "$WORK/client/"
chmod 0600 "$WORK/client/client.root.key"
export PGSSLMODE=verify-full PGSSLROOTCERT="$WORK/client/ca.crt" PGSSLCERT="$WORK/client/client.root.crt" \
    PGSSLKEY="$WORK/client/client.root.key" PGHOST=localhost PGHOSTADDR=127.0.0.1 PGUSER=root \
    PGDATABASE=defaultdb PGGSSENCMODE=disable PGCONNECT_TIMEOUT=20
printf 'SELECT 1;\n' >"$WORK/select1.sql"
cat >"$WORK/kv.sql" <<'EOF2'
\set k random(1, 1000)
\set r random(1, 1000000000)
SELECT v FROM kv WHERE k = :k;
UPDATE kv SET v = :r WHERE k = :k;
EOF2
head -3 "$WORK/kv.sql" >"$WORK/read.sql"
case "$WORKLOAD" in
connect) PGBENCH_ARGS=(-n -C -f "$WORK/select1.sql") ;;
kv) PGBENCH_ARGS=(-n -M extended -f "$WORK/kv.sql") ;;
read) PGBENCH_ARGS=(-n -M extended -f "$WORK/read.sql") ;;
*) echo "WORKLOAD is connect, kv or read" >&2; exit 2 ;;
esac

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
start() { # name binary -> "pid port"
    local port
    port="$(free_port)"
    cp "$2" "$WORK/moat-$1"
    "$WORK/moat-$1" start-single-node --certs-dir "$C" --store "$WORK/store-$1" \
        --listen-addr "127.0.0.1:$port" --http-addr off >"$WORK/$1.out" 2>"$WORK/$1.log" &
    local pid=$!
    for _ in $(seq 100); do
        grep -q "serving SQL" "$WORK/$1.out" 2>/dev/null && break
        sleep 0.1
    done
    echo "$pid $port"
}
read -r PA PORTA < <(start a "$A")
read -r PB PORTB < <(start b "$B")
PIDS=("$PA" "$PB")
if [ "$WORKLOAD" != connect ]; then
    for port in "$PORTA" "$PORTB"; do
        psql -X -q -v ON_ERROR_STOP=1 -p "$port" -c "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)" \
            -c "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) INSERT INTO kv SELECT i, 'v' FROM s"
    done
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # pid port -> ms per connection
    local t0 t1 n
    t0="$(ticks "$1")"
    n="$(PGPORT="$2" "$PGBENCH" "${PGBENCH_ARGS[@]}" -T "$SECS" -c 4 -j 2 2>&1 |
        sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')"
    t1="$(ticks "$1")"
    awk -v t="$((t1 - t0))" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t * 1000 / hz / n }'
}

printf 'rep\tA ms/%s\tB ms/%s\tB/A\n' "$WORKLOAD" "$WORKLOAD"
ra=()
rb=()
for rep in $(seq "$REPS"); do
    if ((rep % 2)); then
        a="$(run "$PA" "$PORTA")"
        b="$(run "$PB" "$PORTB")"
    else
        b="$(run "$PB" "$PORTB")"
        a="$(run "$PA" "$PORTA")"
    fi
    ra+=("$a")
    rb+=("$b")
    printf '%s\t%s\t%s\t%s\n' "$rep" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'median\t%s\t%s\n' "$(median "${ra[@]}")" "$(median "${rb[@]}")"
