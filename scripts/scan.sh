#!/usr/bin/env bash
# Scans a real moat node's TLS listeners with sslscan and testssl.sh, on
# loopback only, and prints a summary. For each node key type (ECDSA P-256,
# RSA 2048) it makes a fresh certs directory in a temporary folder, starts
# `moat start-single-node --listen-addr 127.0.0.1:0`, scans the SQL port
# (PostgreSQL SSLRequest and direct TLS), the HTTPS console, and the RPC role
# of the shared port (a ClientHello offering ALPN h2: TLS 1.3 and a node
# client certificate required, so the scanners are refused; probed with
# `openssl s_client -alpn h2` and the node's own certificates), stops the
# node and removes the folder.
#
#   scripts/scan.sh            sslscan + testssl.sh (about 12 minutes)
#   scripts/scan.sh --quick    sslscan and the RPC probes only (about a minute)
#   scripts/scan.sh --keep     keep the temporary folder with every report
#
# Environment: MOAT_BIN (a moat binary; default: build it), TESTSSL_OPENSSL
# (passed to testssl.sh --openssl), CARGO_TARGET_DIR.
# Exit status 0 when every expectation holds (TLS 1.2/1.3 only, AEAD suites
# with forward secrecy only, no renegotiation, no compression, no known
# vulnerability), 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
keep=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $a (try --help)" >&2; exit 2 ;;
  esac
done

need=()
command -v sslscan >/dev/null || need+=(sslscan)
((quick)) || command -v testssl >/dev/null || need+=(testssl.sh)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -n "${MOAT_BIN:-}" ]; then
  moat="$MOAT_BIN"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}"
  cargo build --quiet -p moat-cli
  moat="$CARGO_TARGET_DIR/debug/moat"
fi

tmp=$(mktemp -d -t moat-scan.XXXXXX)
# A private copy: a concurrent cargo build must not replace the binary
# between the two nodes, and the node's process name is not "moat".
cp "$moat" "$tmp/moat-scan-node"
moat="$tmp/moat-scan-node"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if ((keep)); then echo "reports kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

has_console=0
"$moat" start-single-node --help | grep -q -- '--http-addr' && has_console=1

summary=()
failed=0
note() { summary+=("$1"); }
fail() {
  summary+=("  FAIL: $1")
  failed=1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  local port=$1 i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# start_node DIR: starts a node on DIR/certs, sets SQL_PORT (and HTTP_PORT).
start_node() {
  local dir=$1 extra=() i
  HTTP_PORT=""
  if ((has_console)); then
    HTTP_PORT=$(free_port)
    extra=(--http-addr "127.0.0.1:$HTTP_PORT")
  fi
  "$moat" start-single-node --certs-dir "$dir/certs" --store "$dir/store" \
    --listen-addr 127.0.0.1:0 "${extra[@]}" >"$dir/node.out" 2>"$dir/node.log" &
  pids+=($!)
  SQL_PORT=""
  for i in $(seq 300); do
    SQL_PORT=$(sed -n 's/^moat node serving SQL on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/node.out")
    [ -n "$SQL_PORT" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$SQL_PORT" ]; then
    echo "the node did not start:" >&2
    cat "$dir/node.log" >&2
    exit 1
  fi
  if [ -n "$HTTP_PORT" ] && ! wait_port "$HTTP_PORT"; then
    echo "the console did not listen on 127.0.0.1:$HTTP_PORT" >&2
    exit 1
  fi
}

stop_node() {
  local p=${pids[-1]}
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset 'pids[-1]'
}

# check_sslscan XML LABEL AUTH: checks one sslscan XML report (AUTH = ECDSA or RSA).
check_sslscan() {
  local xml=$1 label=$2 auth=$3 bad=0 protos suites reneg
  for p in 'ssl" version="2' 'ssl" version="3' 'tls" version="1.0' 'tls" version="1.1'; do
    grep -q "type=\"$p\" enabled=\"0\"" "$xml" || { fail "$label: ${p//\"/} accepted or not tested"; bad=1; }
  done
  grep -q 'type="tls" version="1.3" enabled="1"' "$xml" || { fail "$label: TLS 1.3 not enabled"; bad=1; }
  while IFS='|' read -r ver name; do
    [ -z "$name" ] && continue
    case "$ver/$name" in
      TLSv1.3/TLS_AES_*_GCM_*|TLSv1.3/TLS_CHACHA20_POLY1305_*) ;;
      TLSv1.2/ECDHE-"$auth"-AES*-GCM-*|TLSv1.2/ECDHE-"$auth"-CHACHA20-POLY1305) ;;
      *) fail "$label: suite $ver $name is not AEAD with forward secrecy"; bad=1 ;;
    esac
  done < <(sed -n 's/.*<cipher [^>]*sslversion="\([^"]*\)"[^>]*cipher="\([^"]*\)".*/\1|\2/p' "$xml")
  grep -q '<renegotiation supported="1" secure="0"' "$xml" && { fail "$label: insecure renegotiation"; bad=1; }
  grep -q '<renegotiation ' "$xml" || { fail "$label: renegotiation not tested"; bad=1; }
  grep -q '<compression supported="1"' "$xml" && { fail "$label: TLS compression"; bad=1; }
  grep -q 'vulnerable="1"' "$xml" && { fail "$label: heartbleed"; bad=1; }
  protos=$(sed -n 's/.*<protocol type="tls" version="\([^"]*\)" enabled="1".*/\1/p' "$xml" | tr '\n' ' ')
  suites=$(grep -c '<cipher ' "$xml" || true)
  reneg=$(sed -n 's/.*<renegotiation supported="\(.\)" secure="\(.\)".*/supported=\1 secure=\2/p' "$xml")
  note "  sslscan  $label: TLS ${protos% }; $suites suites; renegotiation $reneg; $( ((bad)) && echo FAIL || echo ok)"
  note "           $(sed -n 's/.*<cipher [^>]*cipher="\([^"]*\)".*/\1/p' "$xml" | tr '\n' ' ')"
}

# check_testssl JSON LABEL: summarises one testssl.sh flat JSON report.
check_testssl() {
  local json=$1 label=$2 out rc=0
  out=$(python3 - "$json" <<'EOF'
import json, sys
findings = json.load(open(sys.argv[1]))
rank = {"OK": 0, "INFO": 0, "WARN": 1, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
# Certificate-policy findings rated by the public Web PKI's rules, expected
# with a private cluster CA (see docs/security.md, "Scanner findings").
expected = {
    "cert_validityPeriod": "the 5-year node lifetime is CockroachDB's default; shorten with --lifetime",
    "cert_revocation": "revocation is by the CRL files of the certs directory (and --ocsp-url if issued with it)",
    "DNS_CAArecord": "CAA is for public DNS names",
}
key = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "cipherlist_NULL", "cipherlist_aNULL",
       "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "cipherlist_STRONG",
       "PFS", "FS", "heartbleed", "CCS", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS",
       "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4",
       "cert_chain_of_trust"]
counts, notes, bad, seen = {}, [], False, {}
for f in findings:
    sev = f.get("severity", "INFO")
    counts[sev] = counts.get(sev, 0) + 1
    fid, text = f.get("id", ""), f.get("finding", "")
    if fid in key and fid not in seen:
        seen[fid] = f"{fid} {text}".strip()
    if fid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1") and "not offered" not in text:
        notes.append(f"FAIL {fid}: {text}"); bad = True
    elif fid in expected and rank.get(sev, 0) >= 1:
        notes.append(f"expected {sev} {fid}: {text} ({expected[fid]})")
    elif fid == "scanProblem" or rank.get(sev, 0) >= 2:
        notes.append(f"FAIL {sev} {fid}: {text}"); bad = True
    elif rank.get(sev, 0) == 1:
        notes.append(f"note {sev} {fid}: {text}")
print("severities: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
line = ""
for fid in key:
    if fid in seen:
        item = seen[fid]
        if line and len(line) + len(item) > 100:
            print("key " + line)
            line = ""
        line = f"{line}; {item}" if line else item
if line:
    print("key " + line)
for n in notes:
    print(n)
sys.exit(1 if bad else 0)
EOF
  ) || rc=$?
  note "  testssl  $label: $(head -1 <<<"$out"); $( ((rc)) && echo FAIL || echo ok)"
  while IFS= read -r l; do
    [ -z "$l" ] && continue
    if [[ $l == FAIL* ]]; then fail "$label: ${l#FAIL }"; else note "           $l"; fi
  done < <(tail -n +2 <<<"$out")
}

run_sslscan() { # LABEL OUTFILE ARGS...
  local label=$1 out=$2
  shift 2
  echo "sslscan $* ($label)" >&2
  sslscan --no-colour --xml="$out.xml" "$@" >"$out.txt" 2>&1 || true
}

run_testssl() { # LABEL OUTFILE CAFILE ARGS...
  local label=$1 out=$2 ca=$3 extra=()
  shift 3
  [ -n "${TESTSSL_OPENSSL:-}" ] && extra=(--openssl "$TESTSSL_OPENSSL")
  echo "testssl $* ($label, about 2 minutes)" >&2
  testssl --quiet --color 0 --warnings off --add-ca "$ca" "${extra[@]}" \
    --jsonfile "$out.json" "$@" >"$out.txt" 2>&1 || true
}

# rpc_probe OUT ARGS...: one `openssl s_client -alpn h2` handshake on the
# shared port (direct TLS), kept open 0.5 s to read a post-handshake alert
# (TLS 1.3 refuses a client certificate after the client's Finished); prints
# "<protocol>/<cipher> alert=<number or none>".
rpc_probe() {
  local out=$1 proto cipher alert
  shift
  (sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$SQL_PORT" -servername localhost \
    -CAfile "$dir/certs/ca.crt" -alpn h2 "$@" >"$out" 2>&1 || true
  proto=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)/\1/p' "$out" | head -1)
  cipher=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)/\2/p' "$out" | head -1)
  alert=$(grep -a -o 'SSL alert number [0-9]*' "$out" | head -1 | awk '{print $4}')
  echo "$proto/$cipher alert=${alert:-none}"
}

# check_rpc LABEL: the RPC role of the shared port, as a scanner and as a
# node see it. Expectations: TLS 1.3 only (TLS 1.2 gets protocol_version,
# 70), no client certificate gets certificate_required (116), a user's
# certificate gets certificate_unknown (46), the node's certificate gets
# the three TLS 1.3 AEAD suites and only X25519/P-256/P-384 (and the
# ML-KEM hybrid, invisible to OpenSSL 3.0).
check_rpc() {
  local label=$1 r bad=0 suites="" groups="" cs g
  local d="$dir/rpc"
  mkdir -p "$d"
  r=$(rpc_probe "$d/nocert.txt")
  [[ $r == *alert=116 ]] || { fail "$label: no client certificate: $r (expected alert 116)"; bad=1; }
  note "  openssl  RPC $label, no client certificate: $r"
  r=$(rpc_probe "$d/tls12.txt" -tls1_2 -cert "$dir/certs/node.crt" -key "$dir/certs/node.key")
  [[ $r == *alert=70 ]] || { fail "$label: TLS 1.2 with the node certificate: $r (expected alert 70)"; bad=1; }
  note "  openssl  RPC $label, TLS 1.2 + node certificate: $r"
  r=$(rpc_probe "$d/user.txt" -cert "$dir/certs/client.alice.crt" -key "$dir/certs/client.alice.key")
  [[ $r == *alert=46 ]] || { fail "$label: client.alice certificate: $r (expected alert 46)"; bad=1; }
  note "  openssl  RPC $label, client.alice certificate: $r"
  r=$(rpc_probe "$d/root.txt" -cert "$dir/certs/client.root.crt" -key "$dir/certs/client.root.key")
  [[ $r == TLSv1.3/*alert=none ]] || { fail "$label: client.root certificate: $r"; bad=1; }
  note "  openssl  RPC $label, client.root certificate (init only): $r"
  for cs in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 TLS_AES_128_CCM_SHA256 TLS_AES_128_CCM_8_SHA256; do
    r=$(rpc_probe "$d/suite-$cs.txt" -tls1_3 -ciphersuites "$cs" -cert "$dir/certs/node.crt" -key "$dir/certs/node.key")
    [[ $r == TLSv1.3/"$cs"* ]] && suites="$suites $cs"
  done
  [ "$suites" = " TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256" ] ||
    { fail "$label: TLS 1.3 suites accepted:$suites"; bad=1; }
  for g in X25519 P-256 P-384 P-521 X448 ffdhe2048 ffdhe3072; do
    r=$(rpc_probe "$d/group-$g.txt" -groups "$g" -cert "$dir/certs/node.crt" -key "$dir/certs/node.key")
    [[ $r == TLSv1.3/* ]] && groups="$groups $g"
  done
  [ "$groups" = " X25519 P-256 P-384" ] || { fail "$label: key exchange groups accepted:$groups"; bad=1; }
  note "  openssl  RPC $label, node certificate: suites$suites; groups$groups; $( ((bad)) && echo FAIL || echo ok)"
}

note "moat TLS scan, $(date -u +%Y-%m-%dT%H:%MZ)"
note "  sslscan $(sslscan --version | sed 's/\x1b\[[0-9;]*m//g' | awk 'NF {print $1; exit}'), $(openssl version)"
((quick)) || note "  testssl.sh $(testssl --version 2>/dev/null | sed -n 's/.*testssl \{1,\}\([0-9][^ ]*\) from.*/\1/p' | head -1)"

for kt in ecdsa-p256 rsa; do
  dir="$tmp/$kt"
  mkdir -p "$dir"
  auth=ECDSA
  [ "$kt" = rsa ] && auth=RSA
  "$moat" cert create-ca --certs-dir "$dir/certs" --ca-key "$dir/ca.key" --key-type "$kt" >/dev/null
  "$moat" cert create-node --certs-dir "$dir/certs" --ca-key "$dir/ca.key" --key-type "$kt" localhost 127.0.0.1 >/dev/null
  "$moat" cert create-client --certs-dir "$dir/certs" --ca-key "$dir/ca.key" --key-type "$kt" root >/dev/null
  "$moat" cert create-client --certs-dir "$dir/certs" --ca-key "$dir/ca.key" --key-type "$kt" alice >/dev/null
  start_node "$dir"
  note "$kt node certificate:"
  run_sslscan "$kt SQL" "$dir/sslscan-sql" --starttls-psql "127.0.0.1:$SQL_PORT"
  check_sslscan "$dir/sslscan-sql.xml" "SQL SSLRequest ($kt)" "$auth"
  run_sslscan "$kt SQL direct" "$dir/sslscan-sql-direct" "127.0.0.1:$SQL_PORT"
  check_sslscan "$dir/sslscan-sql-direct.xml" "SQL direct TLS ($kt)" "$auth"
  if [ -n "$HTTP_PORT" ]; then
    run_sslscan "$kt console" "$dir/sslscan-http" "127.0.0.1:$HTTP_PORT"
    check_sslscan "$dir/sslscan-http.xml" "HTTPS console ($kt)" "$auth"
  fi
  check_rpc "($kt)"
  if ! ((quick)); then
    run_testssl "$kt SQL" "$dir/testssl-sql" "$dir/certs/ca.crt" -t postgres "127.0.0.1:$SQL_PORT"
    check_testssl "$dir/testssl-sql.json" "SQL SSLRequest ($kt)"
    # Direct TLS on the shared port: protocols, server preferences and ALPN
    # (testssl offers h2 in its ALPN probe: that ClientHello reaches the RPC role).
    run_testssl "$kt shared port" "$dir/testssl-direct" "$dir/certs/ca.crt" -p -P "127.0.0.1:$SQL_PORT"
    check_testssl "$dir/testssl-direct.json" "shared port, direct TLS ($kt)"
    note "           seen: $(python3 -c 'import json,sys; print("; ".join(f["id"] + " " + f["finding"] for f in json.load(open(sys.argv[1])) if f.get("id") in ("service", "ALPN", "ALPN_HTTP2", "NPN", "cipher_order")) or "--")' "$dir/testssl-direct.json")"
    if [ -n "$HTTP_PORT" ]; then
      run_testssl "$kt console" "$dir/testssl-http" "$dir/certs/ca.crt" "https://127.0.0.1:$HTTP_PORT/"
      check_testssl "$dir/testssl-http.json" "HTTPS console ($kt)"
    fi
  fi
  # The node must still serve a real client after the scans.
  if command -v psql >/dev/null; then
    if ! psql "host=localhost port=$SQL_PORT user=root dbname=defaultdb sslmode=verify-full connect_timeout=10 sslrootcert=$dir/certs/ca.crt sslcert=$dir/certs/client.root.crt sslkey=$dir/certs/client.root.key" \
      -X -A -t -c 'SELECT 1' >/dev/null 2>"$dir/psql.err"; then
      fail "$kt: psql after the scans: $(cat "$dir/psql.err")"
    fi
  fi
  stop_node
done
((has_console)) || note "HTTPS console: not scanned (moat start-single-node has no --http-addr yet)"

echo
printf '%s\n' "${summary[@]}"
if ((failed)); then
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: ok"
