#!/bin/bash
# bench/acme.sh: issuance through pkid's ACME server (RFC 8555) beside the
# same pkid's gRPC Issue, in one run.
#
#   bench/acme.sh [--seconds S] [--accounts N] [--no-grpc]
#                 [--pkid F --pkictl F --loadgen F]
#
# On a fresh demo tree and journal, pkid on 127.0.0.1 (every port the
# kernel's) with --acme-listen and test mode (http-01 validated on a
# loopback port, postgres.cybersec-framework.local resolved to 127.0.0.1),
# then, one after the other:
#   acme   bench/acme_bench.py: N accounts (threads of tests/lib/
#          acmeclient.py, default 8), each looping new order -> http-01 ->
#          finalize -> download for S seconds (default 10);
#   grpc   unary Issue, closed loop, 64 in flight, S seconds (bench/loadgen
#          as pki-agent), unless --no-grpc.
# Prints one JSON object per phase (certificates/s, pkid's CPU per
# certificate from /proc/PID/stat) and a last one with the ratios. The ACME
# client is Python: on a small machine it may be the limit, and its own CPU
# per certificate is printed beside pkid's. Nothing is asserted. Traffic
# goes only to 127.0.0.1; pkid is stopped at the end.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the tree
SECONDS_PER_PHASE=10
ACCOUNTS=8
GRPC=1
PKID="" PKICTL="" LOADGEN=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --accounts) ACCOUNTS=$2; shift 2 ;;
    --no-grpc) GRPC=0; shift ;;
    --pkid) PKID=$2; shift 2 ;;
    --pkictl) PKICTL=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    *) echo "acme.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

die() { echo "acme.sh: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/acme-bench.XXXXXX")
# shellcheck source=bench/pkid.sh
. "$top/bench/pkid.sh"
trap 'stop_pkid; rm -rf "$WORK"' EXIT
if [ -z "$PKID" ] || [ -z "$PKICTL" ] || { [ "$GRPC" = 1 ] && [ -z "$LOADGEN" ]; }; then
  BIN=$(opt_bin //server:pkid //client:pkictl //bench:loadgen)
  PKID=${PKID:-$BIN/server/pkid}
  PKICTL=${PKICTL:-$BIN/client/pkictl}
  LOADGEN=${LOADGEN:-$BIN/bench/loadgen}
fi
case $("$PKID" --help 2>&1 || true) in
  *--acme-listen*) ;;
  *) die "$PKID has no ACME server (--acme-listen)" ;;
esac

mkdir -p "$WORK/pki"
"$PKICTL" ceremony demo --out "$WORK/pki" >/dev/null
# The port pkid's http-01 validator connects to, where acme_bench.py's
# responder listens.
HTTP_PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_pkid "$WORK/pkid.log" --identity-rate 0 --identity-max-in-flight 4096 \
  --acme-listen 127.0.0.1:0 --acme-test-mode --acme-http-port "$HTTP_PORT" \
  --acme-resolve postgres.cybersec-framework.local=127.0.0.1
ACME_PORT=""
for _ in $(seq 1 100); do
  ACME_PORT=$(sed -n -e 's/.*"event":"listening","acme":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' \
    -e 's/.*"event":"acme_listening","address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' \
    "$WORK/pkid.log" | head -n 1)
  [ -n "$ACME_PORT" ] && break
  sleep 0.1
done
[ -n "$ACME_PORT" ] || { cat "$WORK/pkid.log" >&2; die "no ACME listener in pkid's log"; }

"$PY" "$top/bench/acme_bench.py" --pkictl "$PKICTL" --pki "$WORK/pki" --grpc-port "$PORT" \
  --acme-port "$ACME_PORT" --http-port "$HTTP_PORT" --pid "$PKID_PID" \
  --accounts "$ACCOUNTS" --seconds "$SECONDS_PER_PHASE" >"$WORK/acme.json"
if [ "$GRPC" = 1 ]; then
  "$LOADGEN" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --server-pid "$PKID_PID" \
    --duration "$SECONDS_PER_PHASE" --warmup 1 --concurrency 64 --label "grpc unary" \
    >"$WORK/grpc.json"
fi
stop_pkid

"$PY" - "$WORK" <<'EOF'
import json, os, sys
work = sys.argv[1]
a = json.load(open(os.path.join(work, "acme.json")))
print(json.dumps(a))
path = os.path.join(work, "grpc.json")
if os.path.exists(path):
    g = json.load(open(path))
    print(json.dumps({"bench": "grpc", "mode": "unary",
                      "certificates_per_s": g["throughput_per_s"],
                      "server_cpu_us_per_cert": g.get("server_cpu_us_per_success"),
                      "p50_us": g.get("latency_us", {}).get("p50"),
                      "p99_us": g.get("latency_us", {}).get("p99"),
                      "errors": g.get("errors")}))
    out = {"acme_over_grpc_throughput": round(
        a["certificates_per_s"] / max(g["throughput_per_s"], 1e-9), 3)}
    if a.get("server_cpu_us_per_cert") and g.get("server_cpu_us_per_success"):
        out["acme_over_grpc_server_cpu_per_cert"] = round(
            a["server_cpu_us_per_cert"] / g["server_cpu_us_per_success"], 2)
    print(json.dumps(out))
EOF
