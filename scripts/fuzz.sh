#!/usr/bin/env bash
# Fuzzes moat's parsers and its SQL port with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; the targets default to all of them:
# pem_der_keys certs_dir hba principal_map pg_startup users_sql.
# Installs cargo-fuzz when missing, makes certificate seeds with the moat
# binary, builds and runs each target for the given time, prints one line
# per target and exits non-zero if any target crashed, hung (-timeout) or
# ran out of memory (-rss_limit_mb / -malloc_limit_mb). Reproducers are kept
# in fuzz/artifacts/<target>/. See docs/fuzzing.md.
#
# Environment: MOAT_FUZZ_TARGET_DIR (build directory of the fuzz crate,
# default ~/.cache/moat-fuzz-target), MOAT_FUZZ_RSS_MB (default 2048),
# MOAT_FUZZ_KEEP_GOING=1 (libFuzzer fork mode: keep fuzzing after a crash and
# collect every distinct one instead of stopping at the first).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

all_targets=(pem_der_keys certs_dir hba principal_map pg_startup users_sql)
secs=60
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
  secs=$1
  shift
fi
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || {
    echo "unknown target $t (known: ${all_targets[*]})" >&2
    exit 2
  }
done
rss_mb=${MOAT_FUZZ_RSS_MB:-2048}

# --- tools -------------------------------------------------------------------
if ! command -v c++ >/dev/null; then # libfuzzer-sys compiles libFuzzer (C++)
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

# --- certificate seeds, made fresh by the moat binary --------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building moat for the seeds"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}" cargo build -q -p moat-cli
moat="${CARGO_TARGET_DIR:-$HOME/.cache/moat-target}/debug/moat"

c=$work/certs
k=$work/ca.key
"$moat" cert create-ca --certs-dir "$c" --ca-key "$k" >/dev/null
"$moat" cert create-node --certs-dir "$c" --ca-key "$k" localhost 127.0.0.1 node.example.com >/dev/null
"$moat" cert create-client --certs-dir "$c" --ca-key "$k" root --also-generate-pkcs8-key >/dev/null
"$moat" cert create-client --certs-dir "$c" --ca-key "$k" node >/dev/null
"$moat" cert create-client --certs-dir "$c" --ca-key "$k" alice --key-type ed25519 >/dev/null
"$moat" cert create-client --certs-dir "$c" --ca-key "$k" bob --key-type ecdsa-p384 >/dev/null
"$moat" cert create-client --certs-dir "$c" --ca-key "$k" carol --key-type rsa >/dev/null
"$moat" cert create-client-ca --certs-dir "$c" --ca-key "$work/ca-client.key" >/dev/null
"$moat" cert create-ui-ca --certs-dir "$c" --ca-key "$work/ca-ui.key" >/dev/null
"$moat" cert create-ui --certs-dir "$c" --ca-key "$work/ca-ui.key" console.example.com >/dev/null
"$moat" cert revoke --certs-dir "$c" --ca-key "$k" "$c/client.carol.crt" --reason keyCompromise >/dev/null
"$moat" cert create-csr --certs-dir "$work/csr" node localhost 10.0.0.1 >/dev/null
"$moat" cert create-csr --certs-dir "$work/csr" client dave >/dev/null

der() { # the first PEM block of a file, as DER
  sed -n '/-----BEGIN/,/-----END/p' "$1" | sed '1d;/-----END/,$d' | base64 -d
}
sep() { printf '\0\0moat\0\0'; }

corpus=$repo/fuzz/corpus
mkdir -p "$corpus"/{pem_der_keys,certs_dir,principal_map}
n=0
for f in "$c"/*.crt "$c"/*.key "$c"/*.crl "$work"/csr/*.csr "$work"/csr/*.key; do
  n=$((n + 1))
  cp "$f" "$corpus/pem_der_keys/seed-$n-$(basename "$f")"
  der "$f" >"$corpus/pem_der_keys/seed-$n-$(basename "$f").der"
done
cp "$c/client.root.key.pk8" "$corpus/pem_der_keys/seed-pk8"

# certs_dir: options segment, then the files in the order of the target's list.
files=(ca.crt node.crt node.key client.root.crt client.root.key ca.crl ca-client.crt
  client.node.crt client.node.key ui.crt ui.key ca-ui.crt ca-client.crl client.alice.crt)
full() {
  for name in "${files[@]}"; do
    sep
    [ -f "$c/$name" ] && cat "$c/$name"
  done
  return 0
}
full >"$corpus/certs_dir/seed-full"
{ sep; cat "$c/ca.crt"; sep; cat "$c/node.crt"; sep; cat "$c/node.key"; } >"$corpus/certs_dir/seed-minimal"
{ printf '\1'; full; } >"$corpus/certs_dir/seed-key-0640"
{ sep; cat "$c/ca.crt"; sep; cat "$c/node.crt"; sep; cat "$c/client.root.key"; } >"$corpus/certs_dir/seed-wrong-key"

for f in node client.root client.alice ui; do
  { printf 'root:admin,node.example.com:node\nCN=node\n'; der "$c/$f.crt"; } >"$corpus/principal_map/seed-$f"
done

# --- protocol seeds (deterministic, committed under fuzz/seeds/pg_startup) -----
be32() {
  local n=$1
  printf "\\$(printf %03o $(((n >> 24) & 255)))\\$(printf %03o $(((n >> 16) & 255)))"
  printf "\\$(printf %03o $(((n >> 8) & 255)))\\$(printf %03o $((n & 255)))"
}
framed() { # TYPE(or empty) < body on stdin
  local body
  body=$(mktemp "$work/body.XXXXXX")
  cat >"$body"
  printf '%s' "$1"
  be32 $(($(stat -c %s "$body") + 4))
  cat "$body"
}
startup() { # key value ...
  {
    printf '\0\3\0\0'
    while (($#)); do
      printf '%s\0%s\0' "$1" "$2"
      shift 2
    done
    printf '\0'
  } | framed ""
}
password() { printf '%s\0' "$1" | framed p; }
sasl_initial() { # mechanism client-first-message
  {
    printf '%s\0' "$1"
    be32 ${#2}
    printf '%s' "$2"
  } | framed p
}
ssl_request() { printf '\0\0\0\10\4\322\26\57'; }
s=$repo/fuzz/seeds/pg_startup
mkdir -p "$s"
{ printf '\0'; ssl_request; } >"$s/raw-sslrequest"
{ printf '\0'; printf '\0\0\0\10\4\322\26\60'; ssl_request; } >"$s/raw-gssenc-then-ssl"
{ printf '\0'; startup user root database defaultdb application_name fuzz; } >"$s/raw-startup-root"
{ printf '\0'; startup user dave; } >"$s/raw-startup-dave-trust"
{ printf '\0'; startup user bob; password secret; } >"$s/raw-startup-bob-password"
{ printf '\0'; printf '\0\0\0\20\4\322\26\56\0\0\0\1\0\0\0\2'; } >"$s/raw-cancel"
{ printf '\0'; printf '\0\0\0\10\0\2\0\0'; } >"$s/raw-protocol-2"
{ printf '\0'; printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'; } >"$s/raw-http"
{ printf '\0'; printf '\26\3\1\0\10\1\0\0\4\3\3\0\0'; } >"$s/raw-direct-tls-garbage"
{ printf '\1'; startup user root database defaultdb; sasl_initial SCRAM-SHA-256 'n,,n=,r=rOprNGfwEbeRWgbNEkqO'; } >"$s/tls-root-scram"
{ printf '\1'; startup user carol; sasl_initial SCRAM-SHA-256-PLUS 'p=tls-server-end-point,,n=,r=abc'; } >"$s/tls-carol-scram-plus"
{ printf '\1'; startup user bob; password secret; } >"$s/tls-bob-password"
{ printf '\1'; startup user erin; printf 'X\0\0\0\4'; } >"$s/tls-erin-terminate"
{ printf '\1'; printf 'Q'; be32 13; printf 'select 1\0'; } >"$s/tls-query-before-startup"
{ printf '\2'; startup user alice; } >"$s/tls-alice-cert"
{ printf '\2'; startup user root; } >"$s/tls-alice-cert-as-root"
{ printf '\2'; startup user Alice database x options '-c x=y'; sasl_initial SCRAM-SHA-256 'n,,n=alice,r=x'; } >"$s/tls-alice-options"

# --- build and run -------------------------------------------------------------
export RUSTC_BOOTSTRAP=1 # cargo-fuzz passes -Z flags; this lets stable rustc accept them
export CARGO_TARGET_DIR=${MOAT_FUZZ_TARGET_DIR:-$HOME/.cache/moat-fuzz-target}
# cargo caches a failed rustc probe (from a run without RUSTC_BOOTSTRAP) and
# does not key it on that variable: drop such a cache.
if grep -qs 'only accepted on the nightly' "$CARGO_TARGET_DIR/.rustc_info.json"; then
  rm -f "$CARGO_TARGET_DIR/.rustc_info.json"
fi
cd "$repo/fuzz"
echo "building the fuzz targets (cargo fuzz build, ASan, release + debug assertions)"
for t in "${targets[@]}"; do
  cargo fuzz build "$t" >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    exit 1
  }
done

logs=$repo/fuzz/logs
mkdir -p "$logs" "$repo/fuzz/artifacts"
export TMPDIR=$work # the targets' temporary certs and store directories
failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t" "$repo/fuzz/seeds/$t" "$repo/fuzz/artifacts/$t"
  dict=$repo/fuzz/dict/$t.dict
  [ "$t" = pem_der_keys ] && dict=$repo/fuzz/dict/pem.dict
  opts=(-max_total_time="$secs" -rss_limit_mb="$rss_mb" -print_final_stats=1 -dict="$dict")
  case $t in
    pg_startup) opts+=(-timeout=30 -detect_leaks=0) ;; # live node tasks would make LSan scan after every input
    certs_dir) opts+=(-timeout=10 -max_len=32768) ;;
    pem_der_keys) opts+=(-timeout=10 -max_len=16384) ;;
    *) opts+=(-timeout=10) ;;
  esac
  [ "${MOAT_FUZZ_KEEP_GOING:-}" = 1 ] && opts+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  echo "== $t: ${secs}s"
  # Known bugs first: every input of fuzz/regressions/<target>/ must pass.
  regress=""
  if compgen -G "$repo/fuzz/regressions/$t/*" >/dev/null; then
    if ! cargo fuzz run "$t" "$repo"/fuzz/regressions/"$t"/* >"$logs/$t.regressions.log" 2>&1; then
      failed=1
      regress=" REGRESSIONS-FAIL (fuzz/regressions/$t still crash: fuzz/logs/$t.regressions.log)"
    fi
  fi
  marker=$work/start-$t
  touch "$marker"
  before=$(find "$repo/fuzz/artifacts/$t" -type f | wc -l)
  rc=0
  cargo fuzz run "$t" "$corpus/$t" "$repo/fuzz/seeds/$t" -- "${opts[@]}" >"$logs/$t.log" 2>&1 || rc=$?
  after=$(find "$repo/fuzz/artifacts/$t" -type f | wc -l)
  # Executions: the final stats (plain mode), else the last status line
  # (fork mode, or a run that stopped at a crash).
  execs=$(grep -a 'stat::number_of_executed_units' "$logs/$t.log" | awk '{s += $2} END {print s + 0}' || true)
  if [ "$execs" = 0 ]; then
    execs=$( (grep -aoE '^#[0-9]+' "$logs/$t.log" || true) | tail -1 | tr -d '#')
  fi
  cov=$( (grep -aoE 'cov: [0-9]+' "$logs/$t.log" || true) | tail -1 | awk '{print $2}')
  if [ "$rc" = 0 ] && [ "$after" = "$before" ] && [ -z "$regress" ]; then
    line="PASS  $t  execs=${execs:-?} cov=${cov:-?}$regress"
  else
    failed=1
    line="FAIL  $t  execs=${execs:-?} cov=${cov:-?} rc=$rc new_artifacts=$((after - before)) (log: fuzz/logs/$t.log, reproducers: fuzz/artifacts/$t/)$regress"
  fi
  echo "$line"
  # What each new reproducer does: replay it and keep the first panic or
  # sanitizer report (its full output goes to fuzz/logs/<target>.<artifact>.log).
  find "$repo/fuzz/artifacts/$t" -type f -newer "$marker" | sort | while read -r a; do
    alog=$logs/$t.$(basename "$a").log
    timeout 300 cargo fuzz run "$t" "$a" >"$alog" 2>&1 || true
    why=$( (grep -aE -A3 '(^panicked at|panicked at|==ERROR|^SUMMARY)' "$alog" || true) | grep -avE '^\s+[0-9]+: |^--$' | head -4 | tr '\n' ' ')
    echo "      fuzz/artifacts/$t/$(basename "$a"): ${why:-see $alog}"
  done
  summary+=("$line")
done

echo
echo "fuzzing summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
