#!/usr/bin/env bash
# TLS handshakes: moat-tls next to openssl s_server over TCP, measured with
# openssl s_time on the same certificates, then the in-memory criterion bench
# (moat's configs against bare rustls). Prints a markdown summary (the figures
# in docs/benchmarks.md come from it).
#
#   bash bench/tls.sh
#
# Builds the release binaries, installs openssl with apt if it is missing,
# works only in a temporary directory (removed on exit), listens on 127.0.0.1
# only, stops its servers on exit and stops by itself. Environment:
# CARGO_TARGET_DIR is honoured; SECS sets the length of each s_time run
# (default 10); KEYS the certificate key types ("ecdsa rsa"); BENCH=0 skips
# the criterion bench.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECS="${SECS:-10}"
KEYS="${KEYS:-ecdsa rsa}"
BENCH="${BENCH:-1}"

log() { printf '== %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
need_pkgs=()
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v ss >/dev/null 2>&1 || need_pkgs+=(iproute2)
if ((${#need_pkgs[@]})); then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    log "installing ${need_pkgs[*]} with apt"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

log "building moat and the tls_server example (release)"
cargo build --release -p moat-cli >&2
cargo build --release -p moat-tls --example tls_server >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
target_dir="${target_dir:-target}"
MOAT="$target_dir/release/moat"
TLS_SERVER="$target_dir/release/examples/tls_server"
for b in "$MOAT" "$TLS_SERVER"; do
    [ -x "$b" ] || { echo "binary not found at $b" >&2; exit 1; }
done

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/moat-bench-tls.XXXXXX")"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Server on CPU 1, s_time on CPU 0, when taskset is there: each gets a core
# of its own on this 2-core machine (the machine's other load still shares them).
PIN_SERVER=() PIN_CLIENT=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 1) PIN_CLIENT=(taskset -c 0)
fi
TCK="$(getconf CLK_TCK)"

# The same short body from every server: s_server -WWW serves hello.txt from
# its working directory, the moat example answers any request with its own.
mkdir -p "$WORK/www"
printf 'hello from moat\n' >"$WORK/www/hello.txt"

free_port() {
    local p
    for p in $(seq 18443 18542); do
        if ! ss -Htln "sport = :$p" | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port in 18443-18542" >&2
    return 1
}

# cpu_ticks <pid>: utime + stime of a process, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# start_server <port> <command...>: runs it in $WORK/www, waits until it
# listens, and checks that it listens on 127.0.0.1 only.
start_server() {
    local port="$1" i
    shift
    (cd "$WORK/www" && exec "${PIN_SERVER[@]}" "$@") </dev/null >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for i in $(seq 1 100); do
        if ss -Htln "sport = :$port" | grep -q .; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            cat "$WORK/server.log" >&2
            echo "server exited before listening" >&2
            exit 1
        fi
        sleep 0.1
    done
    local addrs
    addrs="$(ss -Htln "sport = :$port" | awk '{ print $4 }' | sort -u)"
    if [ "$addrs" != "127.0.0.1:$port" ]; then
        echo "server on port $port listens on '$addrs', expected 127.0.0.1:$port only" >&2
        exit 1
    fi
}

declare -A CONNS CPU_SRV CPU_CLI NEGOTIATED
rows=()

# measure <row name> <certs dir> <port>: one check with s_client (protocol,
# suite, group, verification), then s_time -new for $SECS seconds.
measure() {
    local name="$1" certs="$2" port="$3"
    local info
    info="$(printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -brief -ign_eof \
        -connect "127.0.0.1:$port" -servername localhost \
        -cert "$certs/client.root.crt" -key "$certs/client.root.key" -CAfile "$certs/ca.crt" 2>&1 || true)"
    grep -q 'hello from moat' <<<"$info" || {
        echo "$info" >&2
        echo "$name: no answer from the server" >&2
        exit 1
    }
    grep -q 'Verification: OK' <<<"$info" || {
        echo "$info" >&2
        echo "$name: server certificate did not verify" >&2
        exit 1
    }
    local proto suite group
    proto="$(sed -n 's/^Protocol version: //p' <<<"$info")"
    suite="$(sed -n 's/^Ciphersuite: //p' <<<"$info")"
    group="$(sed -n 's/^\(Server\|Peer\) Temp Key: \([^,]*\).*/\2/p' <<<"$info")"
    NEGOTIATED[$name]="$proto $suite $group"

    log "$name: s_time -new for ${SECS}s"
    local before after t0 t1 out
    before="$(cpu_ticks "$SERVER_PID")"
    t0="$(date +%s.%N)"
    # `times` reports the CPU of s_time (user, sys) after it exits.
    out="$("${PIN_CLIENT[@]}" bash -c '"$@"; times' _ openssl s_time -connect "127.0.0.1:$port" -new \
        -time "$SECS" -www /hello.txt -verify 2 \
        -cert "$certs/client.root.crt" -key "$certs/client.root.key" -CAfile "$certs/ca.crt" 2>&1)"
    t1="$(date +%s.%N)"
    after="$(cpu_ticks "$SERVER_PID")"
    grep -E 'connections|^[0-9]+m' <<<"$out" >&2
    local n
    n="$(sed -n 's/^\([0-9]*\) connections in [0-9]* real seconds.*/\1/p' <<<"$out")"
    [ -n "$n" ] && [ "$n" -gt 0 ] || {
        echo "$out" >&2
        echo "$name: s_time made no connection" >&2
        exit 1
    }
    # Children's CPU from `times`: the second line, "XmY.YYYs XmY.YYYs".
    local cli
    cli="$(tail -n 1 <<<"$out" | awk '{
        split($1, u, "m"); split($2, s, "m");
        sub("s", "", u[2]); sub("s", "", s[2]);
        print u[1] * 60 + u[2] + s[1] * 60 + s[2] }')"
    CONNS[$name]="$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
    CPU_SRV[$name]="$(awk -v n="$n" -v d="$((after - before))" -v t="$TCK" 'BEGIN { printf "%.0f", d / t / n * 1e6 }')"
    CPU_CLI[$name]="$(awk -v n="$n" -v c="$cli" 'BEGIN { printf "%.0f", c / n * 1e6 }')"
    rows+=("$name")
}

for kt in $KEYS; do
    case "$kt" in
    ecdsa) flags=(--key-type ecdsa-p256) label="ECDSA P-256" ;;
    rsa) flags=(--key-type rsa --key-size 2048) label="RSA-2048" ;;
    *) echo "unknown key type $kt (ecdsa or rsa)" >&2; exit 1 ;;
    esac
    certs="$WORK/$kt/certs"
    log "$label: certs directory with $MOAT"
    "$MOAT" cert create-ca --certs-dir "$certs" --ca-key "$WORK/$kt/ca.key" "${flags[@]}" >/dev/null
    "$MOAT" cert create-node --certs-dir "$certs" --ca-key "$WORK/$kt/ca.key" "${flags[@]}" localhost 127.0.0.1 >/dev/null
    "$MOAT" cert create-client --certs-dir "$certs" --ca-key "$WORK/$kt/ca.key" "${flags[@]}" root >/dev/null

    for role in rpc sql; do
        port="$(free_port)"
        start_server "$port" "$TLS_SERVER" --certs-dir "$certs" --listen "127.0.0.1:$port" --role "$role" \
            --max-seconds $((SECS * 3 + 60))
        measure "$label|moat tls_server --role $role" "$certs" "$port"
        stop_server
    done

    port="$(free_port)"
    start_server "$port" openssl s_server -quiet -accept "127.0.0.1:$port" -WWW \
        -cert "$certs/node.crt" -key "$certs/node.key" -CAfile "$certs/ca.crt" -Verify 1
    measure "$label|openssl s_server -WWW -Verify 1" "$certs" "$port"
    stop_server
done

# --- the in-memory bench ----------------------------------------------------------
bench_out="$WORK/bench.txt"
if [ "$BENCH" != 0 ]; then
    log "cargo bench -p moat-tls --bench handshake"
    cargo bench -p moat-tls --bench handshake 2>&1 | tee "$bench_out" >&2
fi

# --- summary -------------------------------------------------------------------
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
mem="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo
echo "## TLS handshakes, whole run ($(date -u +%Y-%m-%d))"
echo
echo "Machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $mem; $(uname -sr);" \
    "load average $load_before before the runs, $(cut -d' ' -f1-3 /proc/loadavg) after."
echo "Tools: $("$MOAT" --version), $(openssl version | cut -d' ' -f1-2), rustc $(rustc --version | cut -d' ' -f2)."
echo
echo "openssl s_time -new -www /hello.txt -verify 2, client.root.crt, ${SECS}s per row; server pinned to CPU 1 and s_time to CPU 0 (${PIN_SERVER[*]:-not pinned}):"
echo
echo "| certs | server | negotiated (s_client) | connections/s | server CPU µs/conn | server conns/s per core | s_time CPU µs/conn |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: |"
for r in "${rows[@]}"; do
    IFS='|' read -r kt server <<<"$r"
    per_core="$(awk -v c="${CPU_SRV[$r]}" 'BEGIN { printf "%.0f", 1e6 / c }')"
    echo "| $kt | $server | ${NEGOTIATED[$r]} | ${CONNS[$r]} | ${CPU_SRV[$r]} | $per_core | ${CPU_CLI[$r]} |"
done
if [ -s "$bench_out" ] 2>/dev/null; then
    echo
    echo "Criterion (thread CPU time per handshake or check: [low, estimate, high] of the 95 % interval; one function after another):"
    echo
    echo '```'
    grep -E '^(handshake|principal)[^ ]*|time:' "$bench_out" | sed 's/^[[:space:]]*//' |
        awk '/^(handshake|principal)/ { name = $1; if (NF > 1) { $1 = ""; print name $0 } ; next } { print name "  " $0 }' |
        grep 'time:' | grep -v '%' || true
    echo '```'
    echo
    sed -n '/^Interleaved A\/B/,$p' "$bench_out" | grep -E '^Interleaved' || true
    echo
    sed -n '/^Interleaved A\/B/,$p' "$bench_out" | grep -E '^\|' || true
fi
