#!/usr/bin/env bash
# Certificate creation as whole processes: moat next to the openssl CLI and
# mkcert, measured with hyperfine in the same run. Prints a markdown summary
# (the figures in docs/benchmarks.md come from it).
#
#   bash bench/certs.sh
#
# Builds the release binary, installs hyperfine and mkcert with apt if they
# are missing, works only in a temporary directory (removed on exit) and stops
# by itself. Environment: CARGO_TARGET_DIR is honoured; RUNS_FAST / RUNS_SLOW
# set the number of timed runs of the fast (ECDSA) and slow (RSA) jobs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS_FAST="${RUNS_FAST:-30}"
RUNS_SLOW="${RUNS_SLOW:-15}"

log() { printf '== %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
need_pkgs=()
command -v hyperfine >/dev/null 2>&1 || need_pkgs+=(hyperfine)
command -v mkcert >/dev/null 2>&1 || need_pkgs+=(mkcert)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
if ((${#need_pkgs[@]})); then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    log "installing ${need_pkgs[*]} with apt"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

log "building moat (release)"
cargo build --release -p moat-cli >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
MOAT="${target_dir:-target}/release/moat"
[ -x "$MOAT" ] || { echo "moat binary not found at $MOAT" >&2; exit 1; }

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/moat-bench-certs.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

HOSTS="localhost 127.0.0.1 node1.example.internal"

# --- the jobs, one script each -------------------------------------------------
# Every job writes into $WORK/<job>/, which --prepare empties before each run.

# moat: create-node alone, with an existing ECDSA CA, replacing the node files.
mkdir -p "$WORK/node"
"$MOAT" cert create-ca --certs-dir "$WORK/node/certs" --ca-key "$WORK/node/ca.key" >/dev/null
# shellcheck disable=SC2086 # the names are meant to split
"$MOAT" cert create-node --certs-dir "$WORK/node/certs" --ca-key "$WORK/node/ca.key" $HOSTS >/dev/null

# moat: a whole certs directory (CA + node + client root).
moat_dir_script() { # <job> <key flags>
    cat >"$WORK/$1.sh" <<EOF
set -e
d="$WORK/$1"
mkdir -p "\$d"
"$MOAT" cert create-ca     --certs-dir "\$d/certs" --ca-key "\$d/ca.key" $2 >/dev/null
"$MOAT" cert create-node   --certs-dir "\$d/certs" --ca-key "\$d/ca.key" $2 $HOSTS >/dev/null
"$MOAT" cert create-client --certs-dir "\$d/certs" --ca-key "\$d/ca.key" $2 root >/dev/null
EOF
}
moat_dir_script moat-ecdsa "--key-type ecdsa-p256"
moat_dir_script moat-rsa "--key-type rsa --key-size 2048"

# openssl CLI: the same directory with genpkey / req / x509: a self-signed CA,
# a node certificate (CN=node, SANs, serverAuth+clientAuth) and a client
# certificate (CN=root, clientAuth), each leaf signed by the CA with a random
# serial (the two CSRs are left beside certs/).
cat >"$WORK/openssl-ext.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[node]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:node1.example.internal
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
openssl_dir_script() { # <job> <genpkey algorithm options>
    cat >"$WORK/$1.sh" <<EOF
set -e
d="$WORK/$1"
x="$WORK/openssl-ext.cnf"
mkdir -p "\$d/certs"
cd "\$d"
openssl genpkey $2 -out ca.key 2>/dev/null
openssl req -new -x509 -key ca.key -subj "/O=moat/CN=moat CA" -days 3660 \
    -config "\$x" -extensions ca -out certs/ca.crt
openssl genpkey $2 -out certs/node.key 2>/dev/null
openssl req -new -key certs/node.key -subj "/O=moat/CN=node" -out node.csr
openssl x509 -req -in node.csr -CA certs/ca.crt -CAkey ca.key -days 1830 \
    -extfile "\$x" -extensions node -out certs/node.crt 2>/dev/null
openssl genpkey $2 -out certs/client.root.key 2>/dev/null
openssl req -new -key certs/client.root.key -subj "/O=moat/CN=root" -out client.csr
openssl x509 -req -in client.csr -CA certs/ca.crt -CAkey ca.key -days 1830 \
    -extfile "\$x" -extensions client -out certs/client.root.crt 2>/dev/null
EOF
}
openssl_dir_script openssl-ecdsa "-algorithm EC -pkeyopt ec_paramgen_curve:P-256"
openssl_dir_script openssl-rsa "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"

# mkcert: a new CA and one certificate for the node's names, CAROOT in the job
# dir. mkcert 1.4.4 makes an RSA-3072 CA and an RSA-2048 leaf, or with -ecdsa
# an ECDSA P-256 CA and leaf.
mkcert_script() { # <job> <mkcert flags>
    cat >"$WORK/$1.sh" <<EOF
set -e
d="$WORK/$1"
mkdir -p "\$d"
CAROOT="\$d/caroot" mkcert $2 -cert-file "\$d/node.crt" -key-file "\$d/node.key" $HOSTS >/dev/null 2>&1
EOF
}
mkcert_script mkcert-ecdsa "-ecdsa"
mkcert_script mkcert-rsa ""

# --- check once that every job makes what it should ------------------------------
log "checking the jobs' output once"
for job in moat-ecdsa moat-rsa openssl-ecdsa openssl-rsa; do
    rm -rf "${WORK:?}/$job"
    bash "$WORK/$job.sh"
    c="$WORK/$job/certs"
    openssl verify -CAfile "$c/ca.crt" -purpose sslserver "$c/node.crt" >/dev/null
    openssl verify -CAfile "$c/ca.crt" -purpose sslclient "$c/node.crt" "$c/client.root.crt" >/dev/null
    openssl x509 -in "$c/client.root.crt" -noout -subject | grep -q 'CN *= *root'
    openssl x509 -in "$c/node.crt" -noout -ext subjectAltName | grep -q 'node1.example.internal'
done
for job in mkcert-ecdsa mkcert-rsa; do
    rm -rf "${WORK:?}/$job"
    bash "$WORK/$job.sh"
    openssl verify -CAfile "$WORK/$job/caroot/rootCA.pem" -purpose sslserver "$WORK/$job/node.crt" >/dev/null
done

# --- measure -------------------------------------------------------------------
# name | runs | prepare | command (run without a shell: -N)
JOBS=(
    "moat --version (process start, no crypto)|$RUNS_FAST|true|$MOAT --version"
    "openssl version (process start, no crypto)|$RUNS_FAST|true|openssl version"
    "moat create-node (ECDSA P-256, existing CA, --overwrite)|$RUNS_FAST|true|$MOAT cert create-node --overwrite --certs-dir $WORK/node/certs --ca-key $WORK/node/ca.key $HOSTS"
    "moat CA+node+client (ECDSA P-256)|$RUNS_FAST|rm -rf $WORK/moat-ecdsa|bash $WORK/moat-ecdsa.sh"
    "openssl CA+node+client (ECDSA P-256)|$RUNS_FAST|rm -rf $WORK/openssl-ecdsa|bash $WORK/openssl-ecdsa.sh"
    "moat CA+node+client (RSA-2048)|$RUNS_SLOW|rm -rf $WORK/moat-rsa|bash $WORK/moat-rsa.sh"
    "openssl CA+node+client (RSA-2048)|$RUNS_SLOW|rm -rf $WORK/openssl-rsa|bash $WORK/openssl-rsa.sh"
    "mkcert -ecdsa CA + cert (ECDSA P-256)|$RUNS_FAST|rm -rf $WORK/mkcert-ecdsa|bash $WORK/mkcert-ecdsa.sh"
    "mkcert CA (RSA-3072) + cert (RSA-2048)|$RUNS_SLOW|rm -rf $WORK/mkcert-rsa|bash $WORK/mkcert-rsa.sh"
)

declare -A MEAN SD MIN MAX
i=0
for spec in "${JOBS[@]}"; do
    IFS='|' read -r name runs prepare cmd <<<"$spec"
    i=$((i + 1))
    log "$name"
    hyperfine -N --style basic --warmup 2 --runs "$runs" --prepare "$prepare" \
        --export-csv "$WORK/r$i.csv" --command-name "job$i" "$cmd" >&2
    # command,mean,stddev,median,user,system,min,max (seconds)
    IFS=',' read -r _ mean sd _ _ _ min max < <(tail -n 1 "$WORK/r$i.csv")
    MEAN[$name]=$mean SD[$name]=$sd MIN[$name]=$min MAX[$name]=$max
done

# --- summary -------------------------------------------------------------------
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
verdict() { awk -v s="$1" -v t="$2" 'BEGIN { print (s * 1000 < t) ? "met" : "missed" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
mem="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo
echo "## Certificate creation, whole processes ($(date -u +%Y-%m-%d))"
echo
echo "Machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $mem; $(uname -sr);" \
    "load average $load_before before the runs, $(cut -d' ' -f1-3 /proc/loadavg) after."
echo "Tools: $("$MOAT" --version), $(openssl version | cut -d' ' -f1-2), mkcert $(mkcert -version 2>/dev/null || echo '?'), $(hyperfine --version)."
echo
echo "| job | mean ± σ (ms) | min (ms) | max (ms) | runs |"
echo "| --- | ---: | ---: | ---: | ---: |"
for spec in "${JOBS[@]}"; do
    IFS='|' read -r name runs _ _ <<<"$spec"
    echo "| $name | $(ms "${MEAN[$name]}") ± $(ms "${SD[$name]}") | $(ms "${MIN[$name]}") | $(ms "${MAX[$name]}") | $runs |"
done
echo
me="${MEAN[moat CA+node+client (ECDSA P-256)]}"
mr="${MEAN[moat CA+node+client (RSA-2048)]}"
echo "Ratios (peer mean / moat mean; above 1 = moat faster):"
echo
echo "- openssl vs moat, CA+node+client, ECDSA P-256: $(ratio "${MEAN[openssl CA+node+client (ECDSA P-256)]}" "$me")x"
echo "- openssl vs moat, CA+node+client, RSA-2048: $(ratio "${MEAN[openssl CA+node+client (RSA-2048)]}" "$mr")x"
echo "- mkcert -ecdsa (CA + 1 cert, all ECDSA P-256) vs moat ECDSA P-256 (CA + 2 certs): $(ratio "${MEAN[mkcert -ecdsa CA + cert (ECDSA P-256)]}" "$me")x"
echo "- mkcert (RSA-3072 CA + 1 RSA-2048 cert) vs moat RSA-2048 (CA + 2 certs): $(ratio "${MEAN[mkcert CA (RSA-3072) + cert (RSA-2048)]}" "$mr")x"
echo
mn="${MEAN[moat create-node (ECDSA P-256, existing CA, --overwrite)]}"
echo "Targets:"
echo
echo "- one create-node process (ECDSA) under 3 ms: $(ms "$mn") ms, $(verdict "$mn" 3)"
echo "- a whole CA+node+client directory (ECDSA) under 10 ms: $(ms "$me") ms, $(verdict "$me" 10)"
