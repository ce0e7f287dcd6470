#!/bin/bash
# bench/hsm.sh: issuance with the CA keys in a PKCS#11 token (SoftHSM2)
# beside the same with sealed keys, in one run.
#
#   bench/hsm.sh [--seconds S] [--pkid F --pkictl F --loadgen F]
#
# For each key source, one after the other on the same machine, on a
# fresh demo tree and journal:
#   sealed   keys sealed in the tree, unsealed into pkid's memory: the
#            workers sign with batched ECDSA (nonces prepared while idle);
#   softhsm  every CA key in a SoftHSM2 token (a store made here), which
#            signs with C_Sign on a session per worker: the nonces live in
#            the token, so no batching applies.
# it runs unary Issue, closed loop, 64 in flight, S seconds (loadgen as
# pki-agent), then IssueStream 8x64, and prints one JSON object per source
# and mode: certificates/s and the server's CPU per certificate (SoftHSM2
# runs inside pkid's process, so its signing is in that CPU). A last line
# gives the ratios, and the one before it (bench/pkcs11_speed, built here
# unless --pkid and the others are given) one signature's cost in the token
# beside the same key in memory, per CA key type. Nothing is asserted.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER_PHASE=10
PKID="" PKICTL="" LOADGEN=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --pkid) PKID=$2; shift 2 ;;
    --pkictl) PKICTL=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    *) echo "hsm.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

die() { echo "hsm.sh: $*" >&2; exit 1; }

MODULE=/usr/lib/softhsm/libsofthsm2.so
[ -r "$MODULE" ] || die "SoftHSM2 is not installed ($MODULE); run deploy/setup.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hsm-bench.XXXXXX")
# shellcheck source=bench/pkid.sh
. "$top/bench/pkid.sh"
trap 'stop_pkid; rm -rf "$WORK"' EXIT
if [ -z "$PKID" ] || [ -z "$PKICTL" ] || [ -z "$LOADGEN" ]; then
  BIN=$(opt_bin //server:pkid //client:pkictl //bench:loadgen //bench:pkcs11_speed)
  PKID=${PKID:-$BIN/server/pkid}
  PKICTL=${PKICTL:-$BIN/client/pkictl}
  LOADGEN=${LOADGEN:-$BIN/bench/loadgen}
fi

# make_tree SOURCE: the demo tree in $WORK/pki, its keys sealed or in tokens.
make_tree() {
  rm -rf "$WORK/pki" "$WORK/journal" "$WORK/tokens"
  mkdir -p "$WORK/pki"
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/pki/ca-passphrase"
  chmod 600 "$WORK/pki/ca-passphrase"
  if [ "$1" = sealed ]; then
    "$PKICTL" ceremony demo --out "$WORK/pki" >/dev/null
    return
  fi
  mkdir -p "$WORK/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$WORK/tokens" >"$WORK/softhsm2.conf"
  export SOFTHSM2_CONF=$WORK/softhsm2.conf
  local label
  for label in pkid-root pkid-online; do
    softhsm2-util --init-token --free --label "$label" --so-pin so-pin-0 \
      --pin initial-pin >/dev/null
  done
  printf 'initial-pin\n' >"$WORK/initial-pin"
  chmod 600 "$WORK/initial-pin"
  "$PKICTL" ceremony demo --out "$WORK/pki" --passphrase-file "$WORK/pki/ca-passphrase" \
    --root-pkcs11 "pkcs11:token=pkid-root?module-path=$MODULE" \
    --pkcs11 "pkcs11:token=pkid-online?module-path=$MODULE" \
    --token-pin-file "$WORK/initial-pin" >/dev/null
}

measure() {
  local source=$1
  make_tree "$source"
  start_pkid "$WORK/pkid-$source.log" --identity-rate 0 --identity-max-in-flight 4096
  "$LOADGEN" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --server-pid "$PKID_PID" \
    --duration "$SECONDS_PER_PHASE" --warmup 1 --concurrency 64 --label "$source unary" \
    >"$WORK/$source-unary.json"
  "$LOADGEN" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --server-pid "$PKID_PID" \
    --duration "$SECONDS_PER_PHASE" --warmup 1 --stream --concurrency 8 --stream-requests 64 \
    --label "$source stream" >"$WORK/$source-stream.json"
  stop_pkid
  unset SOFTHSM2_CONF
}

measure sealed
measure softhsm
if [ -n "${BIN:-}" ]; then "$BIN/bench/pkcs11_speed" 2; fi
/usr/bin/python3 - "$WORK" <<'EOF'
import json, os, sys
work = sys.argv[1]
rows = {}
for source in ("sealed", "softhsm"):
    for mode in ("unary", "stream"):
        r = json.load(open(os.path.join(work, "%s-%s.json" % (source, mode))))
        rows[source, mode] = r
        print(json.dumps({"keys": source, "mode": mode,
                          "certificates_per_s": r["throughput_per_s"],
                          "server_cpu_us_per_cert": r.get("server_cpu_us_per_success"),
                          "p50_us": r.get("latency_us", {}).get("p50"),
                          "p99_us": r.get("latency_us", {}).get("p99"),
                          "errors": r.get("errors")}))
out = {}
for mode in ("unary", "stream"):
    s, h = rows["sealed", mode], rows["softhsm", mode]
    out[mode + "_throughput_softhsm_over_sealed"] = round(
        h["throughput_per_s"] / max(s["throughput_per_s"], 1e-9), 3)
    if s.get("server_cpu_us_per_success") and h.get("server_cpu_us_per_success"):
        out[mode + "_cpu_per_cert_softhsm_over_sealed"] = round(
            h["server_cpu_us_per_success"] / s["server_cpu_us_per_success"], 3)
print(json.dumps(out))
EOF
