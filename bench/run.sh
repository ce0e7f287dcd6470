#!/usr/bin/env bash
# bench/run.sh: pkid's issuance benchmark, end to end, on this machine.
#
#   bench/run.sh [--seconds S] [--warmup S] [--short] [--out FILE]
#                [--work DIR] [--keep]
#                [--pkid F --pkictl F --loadgen F --ecdsa-speed F]
#
# Builds //server:pkid, //client:pkictl, //bench:loadgen and
# //bench:ecdsa_speed with --config=opt (unless all four binaries are
# given), makes a demo PKI with `pkictl ceremony demo`, starts pkid on
# 127.0.0.1 (a port the kernel picks, the journal beside the demo tree) and
# measures, one phase after the other:
#   1. the crypto floor: raw ECDSA P-256 sign and verify of the same
#      BoringSSL (ecdsa_speed), measured again once pkid has stopped: the
#      faster of the two is the floor (a noisy machine only slows it), and
#      both are kept, so the noise is seen;
#   2. unary Issue, closed loop (--concurrency calls in flight);
#   3. IssueStream, closed loop (streams of K requests, several in flight);
#   4. unary Issue, open loop at half the peak of phase 2: latency measured
#      from each request's scheduled time;
#   5. an open-loop sweep at 25, 50, 75 and 100% of that peak (the plot);
#   6. pkid's OCSP responder (bench/ocsp_load, keep-alive, POST) asked about
#      a certificate pkid issued online (pkictl issue).
# Then it stops pkid (SIGTERM, waits) and measures the peers on the same
# machine, one at a time, all on 127.0.0.1:
#   7. CFSSL (Debian's golang-cfssl): `cfssl serve` with a P-256 CA, its
#      sign API (POST /api/v1/cfssl/sign) loaded by bench/http_load with 16
#      connections and pre-made CSRs, closed loop, then swept open loop at
#      25, 50, 75 and 100% of that peak as pkid was (http_load --rate);
#   8. `openssl ocsp` as a responder (-multi: one process per core),
#      loaded by bench/http_load (it closes every connection).
# Last, the figure that does not depend on a noisy machine:
#   9. instructions per issued certificate for the whole server beside the
#      crypto floor's, both under valgrind's callgrind (bench/instructions.sh,
#      10 s of unary Issue): a regression shows from one run.
# It prints a table, writes every number (phases, sweep, peers, ratios of
# pkid to each peer) to FILE (default bench/results.json) as one JSON
# object (both with bench/report.py), and plots throughput and p50, p99
# and p99.9 latency against offered load, pkid's and CFSSL's, to FILE's
# .png twin with bench/plot.py
# (Debian's python3-matplotlib).
#
# --seconds S   measured seconds per phase (default 20)
# --warmup S    seconds before each phase's window (default 2)
# --short       3 s phases, 1 s warm-up, short sweep and peers: the smoke
#               test's mode
# --no-peers    skip CFSSL and `openssl ocsp` (and pkid's OCSP phase).
#               Peers are also skipped when the four binaries are given
#               without --http-load and --ocsp-load (nothing is built then)
# --no-plot     no PNG
# --no-instructions  skip phase 9 (also skipped with --short, and when the
#               four binaries are given)
# --work DIR    scratch folder (default bench/.work/run-PID); removed at
#               the end unless --keep
# Traffic goes only to 127.0.0.1. Every process started here is stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PY=/usr/bin/python3

SECONDS_PER_PHASE=20
WARMUP=2
OUT=""
WORK=""
KEEP=0
PKID="" PKICTL="" LOADGEN="" ECDSA_SPEED="" HTTP_LOAD="" OCSP_LOAD=""
SHORT=0
PEERS=1
PLOT=1
INSTRUCTIONS=1
# Connections on the peers (PRODUCT.md quotes cfssl serve with 16 clients)
# and on both OCSP responders.
PEER_CONNS=${BENCH_PEER_CONNS:-16}
# The load: closed-loop unary calls in flight, streams and their length,
# connections, client threads (one: the server gets the other core).
CONCURRENCY=${BENCH_CONCURRENCY:-64}
STREAMS=${BENCH_STREAMS:-8}
STREAM_REQUESTS=${BENCH_STREAM_REQUESTS:-64}
CONNECTIONS=${BENCH_CONNECTIONS:-4}
THREADS=${BENCH_THREADS:-1}

COMMAND="bench/run.sh $*"

die() { echo "run.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --short) SECONDS_PER_PHASE=3; WARMUP=1; SHORT=1; INSTRUCTIONS=0; shift ;;
    --no-instructions) INSTRUCTIONS=0; shift ;;
    --no-peers) PEERS=0; shift ;;
    --no-plot) PLOT=0; shift ;;
    --http-load) HTTP_LOAD=$2; shift 2 ;;
    --ocsp-load) OCSP_LOAD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --pkid) PKID=$2; shift 2 ;;
    --pkictl) PKICTL=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    --ecdsa-speed) ECDSA_SPEED=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
done
[[ $SECONDS_PER_PHASE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--seconds wants a number"
[[ $WARMUP =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--warmup wants a number"
OUT=${OUT:-$REPO/bench/results.json}
PNG=${OUT%.json}.png

if [ -z "$PKID" ] || [ -z "$PKICTL" ] || [ -z "$LOADGEN" ] || [ -z "$ECDSA_SPEED" ]; then
  targets=(//server:pkid //client:pkictl //bench:loadgen //bench:ecdsa_speed)
  [ "$PEERS" = 1 ] && targets+=(//bench:http_load //bench:ocsp_load)
  (cd "$REPO" && bazel build --config=opt "${targets[@]}") || die "build failed"
  # Not the bazel-bin symlink: another build may have pointed it elsewhere.
  BIN=$(cd "$REPO" && bazel info --config=opt bazel-bin 2>/dev/null)
  PKID=${PKID:-$BIN/server/pkid}
  PKICTL=${PKICTL:-$BIN/client/pkictl}
  LOADGEN=${LOADGEN:-$BIN/bench/loadgen}
  ECDSA_SPEED=${ECDSA_SPEED:-$BIN/bench/ecdsa_speed}
  if [ "$PEERS" = 1 ]; then
    HTTP_LOAD=${HTTP_LOAD:-$BIN/bench/http_load}
    OCSP_LOAD=${OCSP_LOAD:-$BIN/bench/ocsp_load}
  fi
else
  INSTRUCTIONS=0 # instructions.sh builds its own
fi
PEERS_SKIPPED=""
if [ "$PEERS" = 0 ]; then
  PEERS_SKIPPED="--no-peers"
elif [ -z "$HTTP_LOAD" ] || [ -z "$OCSP_LOAD" ]; then
  PEERS=0
  PEERS_SKIPPED="no --http-load/--ocsp-load binaries given"
fi
for b in "$PKID" "$PKICTL" "$LOADGEN" "$ECDSA_SPEED"; do
  [ -x "$b" ] || die "not an executable: $b"
done
if [ "$PEERS" = 1 ]; then
  for b in "$HTTP_LOAD" "$OCSP_LOAD"; do
    [ -x "$b" ] || die "not an executable: $b"
  done
fi

if [ -z "$WORK" ]; then
  WORK=$REPO/bench/.work/run-$$
  CLEAN_WORK=1
else
  CLEAN_WORK=0
fi
[ "$KEEP" = 1 ] && CLEAN_WORK=0
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# start_pkid and stop_pkid (bench/pkid.sh).
source "$HERE/pkid.sh"
# stop_peer PID: SIGTERM to a peer server and its children (`openssl ocsp
# -multi` waits for a child to exit before it notices SIGTERM), then
# SIGKILL after 5 s.
PEER_PID=""
stop_peer() {
  local pid=$PEER_PID kids i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kids=$(pgrep -P "$pid" || true)
    kill -TERM "$pid" 2>/dev/null || true
    # shellcheck disable=SC2086
    [ -z "$kids" ] || kill -TERM $kids 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kids=$(pgrep -P "$pid" || true)
      kill -KILL "$pid" 2>/dev/null || true
      # shellcheck disable=SC2086
      [ -z "$kids" ] || kill -KILL $kids 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  PEER_PID=""
}
cleanup() {
  stop_pkid
  stop_peer
  if [ "$CLEAN_WORK" = 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== demo PKI in $WORK/pki" >&2
"$PKICTL" ceremony demo --out "$WORK/pki" >"$WORK/ceremony.log" 2>&1 ||
  { cat "$WORK/ceremony.log" >&2; die "pkictl ceremony demo failed"; }

echo "== crypto floor (ecdsa_speed)" >&2
if [ "$SHORT" = 1 ]; then FLOOR_SECS=0.5; else FLOOR_SECS=2; fi
"$ECDSA_SPEED" "$FLOOR_SECS" >"$WORK/ecdsa_speed.json"

echo "== starting pkid" >&2
# One identity (pki-agent) drives the whole load here, where a fleet has
# many: its share (--identity-rate, --identity-max-in-flight) is lifted,
# so that what is measured is pkid's capacity, not one caller's quota.
start_pkid "$WORK/pkid.log" --identity-rate 0 --identity-max-in-flight 4096
echo "$PKID_PID" >"$WORK/pkid.pid"
echo "   pkid pid $PKID_PID on 127.0.0.1:$PORT (OCSP ${OCSP_PORT:-none})" >&2

loadgen() {
  "$LOADGEN" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --server-pid "$PKID_PID" \
    --duration "$SECONDS_PER_PHASE" --warmup "$WARMUP" --connections "$CONNECTIONS" \
    --threads "$THREADS" "$@"
}

echo "== unary Issue, closed loop: $CONCURRENCY in flight, ${SECONDS_PER_PHASE}s" >&2
loadgen --label unary_closed --concurrency "$CONCURRENCY" >"$WORK/unary_closed.json"

echo "== IssueStream, closed loop: $STREAMS streams x $STREAM_REQUESTS, ${SECONDS_PER_PHASE}s" >&2
loadgen --label stream_closed --stream --concurrency "$STREAMS" \
  --stream-requests "$STREAM_REQUESTS" >"$WORK/stream_closed.json"

PEAK=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_per_s"])' \
  "$WORK/unary_closed.json")
HALF=$("$PY" -c 'import sys; print(max(1, round(float(sys.argv[1]) / 2)))' "$PEAK")
# open_loop NAME WARMUP ARGS...: loadgen into $WORK/NAME.json, with pkid's
# own latency histogram and its committer's fdatasyncs
# (bench/server_latency.py) snapshotted when the warm-up ends and after,
# into $WORK/NAME.server_before/after.json, so the report shows the
# server's latency beside the generator's, and how busy its disk kept it.
open_loop() {
  local name=$1 warm=$2
  shift 2
  loadgen --label "$name" "$@" >"$WORK/$name.json" &
  local lg=$!
  sleep "$warm"
  "$PY" "$HERE/server_latency.py" snap "$ADMIN_PORT" >"$WORK/$name.server_before.json"
  wait "$lg" || die "loadgen failed ($name)"
  "$PY" "$HERE/server_latency.py" snap "$ADMIN_PORT" >"$WORK/$name.server_after.json"
}

echo "== unary Issue, open loop at half the peak: $HALF/s, ${SECONDS_PER_PHASE}s" >&2
open_loop open_half_peak "$WARMUP" --rate "$HALF"

# The sweep: open loop at fractions of the closed-loop unary peak.
if [ "$SHORT" = 1 ]; then SWEEP_SECS=1.5; SWEEP_WARM=0.5; else
  SWEEP_SECS=$("$PY" -c 'import sys; print(max(2, float(sys.argv[1]) / 2))' "$SECONDS_PER_PHASE")
  SWEEP_WARM=1
fi
for pct in 25 50 75 100; do
  RATE=$("$PY" -c 'import sys; print(max(1, round(float(sys.argv[1]) * int(sys.argv[2]) / 100)))' \
    "$PEAK" "$pct")
  echo "== sweep: open loop at $pct% of the peak, $RATE/s, ${SWEEP_SECS}s" >&2
  open_loop "sweep_$pct" "$SWEEP_WARM" --rate "$RATE" --duration "$SWEEP_SECS" \
    --warmup "$SWEEP_WARM"
done

if [ "$SHORT" = 1 ]; then PEER_SECS=2; PEER_WARM=0.5; else
  PEER_SECS=$SECONDS_PER_PHASE; PEER_WARM=$WARMUP
fi
# ocsp_json NAME LINE: ocsp_load's one line of key=value as JSON.
ocsp_json() { "$PY" "$HERE/ocsp_json.py" "$1" "$2"; }

if [ "$PEERS" = 1 ] && [ -n "$OCSP_PORT" ]; then
  echo "== pkid OCSP: a certificate issued online, ocsp_load $PEER_CONNS connections, ${PEER_SECS}s" >&2
  mkdir -p "$WORK/pkid-ocsp"
  "$PKICTL" issue --pki "$WORK/pki" --as pki-agent --server "127.0.0.1:$PORT" \
    --service pki-agent --usage server --out-cert "$WORK/pkid-ocsp/leaf.pem" \
    --out-key "$WORK/pkid-ocsp/leaf.key" --out-chain "$WORK/pkid-ocsp/chain.pem" \
    >"$WORK/pkid-ocsp/issue.log" 2>&1 || { cat "$WORK/pkid-ocsp/issue.log" >&2; die "pkictl issue failed"; }
  # The issuer: the first certificate of the chain.
  sed -n '1,/-----END CERTIFICATE-----/p' "$WORK/pkid-ocsp/chain.pem" >"$WORK/pkid-ocsp/issuer.pem"
  openssl ocsp -issuer "$WORK/pkid-ocsp/issuer.pem" -cert "$WORK/pkid-ocsp/leaf.pem" \
    -reqout "$WORK/pkid-ocsp/req.der" -no_nonce >/dev/null 2>&1 || die "openssl ocsp -reqout failed"
  LINE=$("$OCSP_LOAD" --port "$OCSP_PORT" --path "$OCSP_PATH" --req "$WORK/pkid-ocsp/req.der" \
    --conns "$PEER_CONNS" --seconds "$PEER_SECS" --pid "$PKID_PID") ||
    { echo "$LINE" >&2; die "ocsp_load against pkid failed"; }
  echo "   $LINE" >&2
  ocsp_json pkid_ocsp "$LINE" >"$WORK/pkid_ocsp.json"
fi

stop_pkid
echo "== crypto floor again (ecdsa_speed)" >&2
"$ECDSA_SPEED" "$FLOOR_SECS" >"$WORK/ecdsa_speed_end.json"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
  local i
  for i in $(seq 1 100); do
    if "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' \
      "$1" 2>/dev/null; then return 0; fi
    kill -0 "$PEER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

if [ "$PEERS" = 1 ]; then
  P=$WORK/peers
  mkdir -p "$P"
  # One P-256 CA for both peers, its key unencrypted; a leaf for OCSP.
  openssl ecparam -name prime256v1 -genkey -noout -out "$P/ca-key.pem" 2>/dev/null
  openssl req -x509 -new -key "$P/ca-key.pem" -subj "/CN=bench peer CA" -days 2 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$P/ca.pem" 2>/dev/null
  CSRS=()
  for i in $(seq 0 31); do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout /dev/null \
      -subj "/CN=svc$i.bench.local" -addext "subjectAltName=DNS:svc$i.bench.local" \
      -out "$P/csr$i.pem" 2>/dev/null
    CSRS+=(--csr "$P/csr$i.pem")
  done
  openssl x509 -req -in "$P/csr0.pem" -CA "$P/ca.pem" -CAkey "$P/ca-key.pem" -set_serial 0x1001 \
    -days 1 -out "$P/leaf.pem" 2>/dev/null
  EXP=$(date -u -d "$(openssl x509 -in "$P/leaf.pem" -noout -enddate | cut -d= -f2)" +%y%m%d%H%M%SZ)
  printf 'V\t%s\t\t1001\tunknown\t/CN=svc0.bench.local\n' "$EXP" >"$P/index.txt"
  openssl ocsp -issuer "$P/ca.pem" -cert "$P/leaf.pem" -reqout "$P/req.der" -no_nonce \
    >/dev/null 2>&1 || die "openssl ocsp -reqout failed"

  if command -v cfssl >/dev/null 2>&1; then
    CPORT=$(free_port)
    echo "== CFSSL: cfssl serve, sign API, $PEER_CONNS connections, ${PEER_SECS}s" >&2
    cfssl serve -address 127.0.0.1 -port "$CPORT" -ca "$P/ca.pem" -ca-key "$P/ca-key.pem" \
      -loglevel 3 >"$P/cfssl.log" 2>&1 &
    PEER_PID=$!
    wait_port "$CPORT" || { cat "$P/cfssl.log" >&2; die "cfssl serve did not start"; }
    "$HTTP_LOAD" --port "$CPORT" "${CSRS[@]}" --conns "$PEER_CONNS" --seconds "$PEER_SECS" \
      --warmup "$PEER_WARM" --pid "$PEER_PID" --label cfssl_sign >"$WORK/cfssl.json" ||
      { cat "$WORK/cfssl.json" "$P/cfssl.log" >&2; die "http_load against cfssl failed"; }
    # CFSSL swept open loop as pkid was: the same fractions of its own
    # closed-loop peak, latency from each scheduled send.
    CPEAK=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_per_s"])' \
      "$WORK/cfssl.json")
    for pct in 25 50 75 100; do
      RATE=$("$PY" -c 'import sys; print(max(1, round(float(sys.argv[1]) * int(sys.argv[2]) / 100)))' \
        "$CPEAK" "$pct")
      echo "== CFSSL sweep: open loop at $pct% of its peak, $RATE/s, ${SWEEP_SECS}s" >&2
      "$HTTP_LOAD" --port "$CPORT" "${CSRS[@]}" --conns "$PEER_CONNS" --seconds "$SWEEP_SECS" \
        --warmup "$SWEEP_WARM" --rate "$RATE" --pid "$PEER_PID" --label "cfssl_sweep_$pct" \
        >"$WORK/cfssl_sweep_$pct.json" ||
        { cat "$WORK/cfssl_sweep_$pct.json" "$P/cfssl.log" >&2; die "http_load against cfssl failed"; }
    done
    stop_peer
  else
    echo "== CFSSL: skipped: no cfssl binary (Debian's golang-cfssl; deploy/setup.sh installs it)" >&2
    echo '{"skipped": "no cfssl binary (golang-cfssl not installed)"}' >"$WORK/cfssl.json"
  fi

  MULTI=$(nproc)
  OPORT=$(free_port)
  echo "== openssl ocsp -multi $MULTI, $PEER_CONNS connections, ${PEER_SECS}s" >&2
  # -port takes a number only: it listens on every address; the load
  # goes to 127.0.0.1.
  (cd "$P" && exec openssl ocsp -index index.txt -port "$OPORT" -rsigner ca.pem -rkey ca-key.pem \
    -CA ca.pem -multi "$MULTI" -ignore_err >"$P/openssl-ocsp.log" 2>&1) &
  PEER_PID=$!
  wait_port "$OPORT" || { cat "$P/openssl-ocsp.log" >&2; die "openssl ocsp did not start"; }
  "$HTTP_LOAD" --port "$OPORT" --ocsp "$P/req.der" --conns "$PEER_CONNS" --seconds "$PEER_SECS" \
    --warmup "$PEER_WARM" --pid "$PEER_PID" --label openssl_ocsp >"$WORK/openssl_ocsp.json" ||
    { cat "$WORK/openssl_ocsp.json" "$P/openssl-ocsp.log" >&2; die "http_load against openssl ocsp failed"; }
  stop_peer
fi

if [ "$INSTRUCTIONS" = 1 ]; then
  echo "== instructions per certificate under callgrind (bench/instructions.sh), 10s" >&2
  "$HERE/instructions.sh" --seconds 10 --out "$WORK/instructions.json" >&2 ||
    die "instructions.sh failed"
fi

mkdir -p "$(dirname "$OUT")"
# The JSON file and the table, from what the phases left in $WORK.
"$PY" "$HERE/report.py" "$WORK" "$OUT" "$SECONDS_PER_PHASE" "$WARMUP" "$COMMAND" "$PEERS_SKIPPED"

if [ "$PLOT" = 1 ]; then
  if "$PY" -c 'import matplotlib' 2>/dev/null; then
    "$PY" "$HERE/plot.py" "$OUT" "$PNG" || die "plot.py failed"
    echo "plot: $PNG"
  else
    echo "plot: skipped (no python3-matplotlib; deploy/setup.sh installs it)"
  fi
fi
