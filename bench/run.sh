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
#      BoringSSL (ecdsa_speed);
#   2. unary Issue, closed loop (--concurrency calls in flight);
#   3. IssueStream, closed loop (streams of K requests, several in flight);
#   4. unary Issue, open loop at half the peak of phase 2: latency measured
#      from each request's scheduled time.
# Then it stops pkid (SIGTERM, waits), prints a table and writes every
# number to FILE (default bench/results.json) as one JSON object.
#
# --seconds S   measured seconds per phase (default 20)
# --warmup S    seconds before each phase's window (default 2)
# --short       3 s phases, 1 s warm-up: the smoke test's mode
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
PKID="" PKICTL="" LOADGEN="" ECDSA_SPEED=""
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
    --short) SECONDS_PER_PHASE=3; WARMUP=1; shift ;;
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

if [ -z "$PKID" ] || [ -z "$PKICTL" ] || [ -z "$LOADGEN" ] || [ -z "$ECDSA_SPEED" ]; then
  (cd "$REPO" && bazel build --config=opt //server:pkid //client:pkictl //bench:loadgen \
    //bench:ecdsa_speed) || die "build failed"
  # Not the bazel-bin symlink: another build may have pointed it elsewhere.
  BIN=$(cd "$REPO" && bazel info --config=opt bazel-bin 2>/dev/null)
  PKID=${PKID:-$BIN/server/pkid}
  PKICTL=${PKICTL:-$BIN/client/pkictl}
  LOADGEN=${LOADGEN:-$BIN/bench/loadgen}
  ECDSA_SPEED=${ECDSA_SPEED:-$BIN/bench/ecdsa_speed}
fi
for b in "$PKID" "$PKICTL" "$LOADGEN" "$ECDSA_SPEED"; do
  [ -x "$b" ] || die "not an executable: $b"
done

if [ -z "$WORK" ]; then
  WORK=$REPO/bench/.work/run-$$
  CLEAN_WORK=1
else
  CLEAN_WORK=0
fi
[ "$KEEP" = 1 ] && CLEAN_WORK=0
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

PKID_PID=""
stop_pkid() {
  if [ -n "$PKID_PID" ] && kill -0 "$PKID_PID" 2>/dev/null; then
    kill -TERM "$PKID_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 150); do
      kill -0 "$PKID_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$PKID_PID" 2>/dev/null; then
      echo "run.sh: pkid did not stop on SIGTERM in 15 s; killing it" >&2
      kill -KILL "$PKID_PID" 2>/dev/null || true
    fi
  fi
  if [ -n "$PKID_PID" ]; then
    wait "$PKID_PID" 2>/dev/null || true
    PKID_PID=""
  fi
}
cleanup() {
  stop_pkid
  if [ "$CLEAN_WORK" = 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== demo PKI in $WORK/pki" >&2
"$PKICTL" ceremony demo --out "$WORK/pki" >"$WORK/ceremony.log" 2>&1 ||
  { cat "$WORK/ceremony.log" >&2; die "pkictl ceremony demo failed"; }

echo "== crypto floor (ecdsa_speed)" >&2
if [ "$SECONDS_PER_PHASE" = 3 ]; then FLOOR_SECS=0.5; else FLOOR_SECS=2; fi
"$ECDSA_SPEED" "$FLOOR_SECS" >"$WORK/ecdsa_speed.json"

echo "== starting pkid" >&2
"$PKID" --pki "$WORK/pki" --journal "$WORK/journal" --listen 127.0.0.1:0 \
  --ocsp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>"$WORK/pkid.log" &
PKID_PID=$!
echo "$PKID_PID" >"$WORK/pkid.pid"
PORT=""
for _ in $(seq 1 150); do
  PORT=$(sed -n 's/.*"event":"listening","grpc":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' \
    "$WORK/pkid.log" | head -n 1)
  [ -n "$PORT" ] && break
  kill -0 "$PKID_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  cat "$WORK/pkid.log" >&2
  die "pkid did not start"
fi
echo "   pkid pid $PKID_PID on 127.0.0.1:$PORT" >&2

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
echo "== unary Issue, open loop at half the peak: $HALF/s, ${SECONDS_PER_PHASE}s" >&2
loadgen --label open_half_peak --rate "$HALF" >"$WORK/open_half_peak.json"

stop_pkid

mkdir -p "$(dirname "$OUT")"
"$PY" - "$WORK" "$OUT" "$SECONDS_PER_PHASE" "$WARMUP" "$COMMAND" <<'EOF'
import json, os, platform, sys, time

work, out, secs, warm = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
load = lambda n: json.load(open(os.path.join(work, n + ".json")))
floor = load("ecdsa_speed")
sign, verify = floor["ecdsa_p256_sign_per_s"], floor["ecdsa_p256_verify_per_s"]
floor_us = 1e6 / verify + 2e6 / sign  # one CSR verify, two signatures
phases = {n: load(n) for n in ("unary_closed", "stream_closed", "open_half_peak")}
result = {
    "command": sys.argv[5],
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
    "seconds_per_phase": secs,
    "warmup_s": warm,
    "crypto_floor": dict(floor, us_per_certificate=round(floor_us, 1),
                         note="1 ECDSA P-256 verify (CSR) + 2 signatures (certificate, OCSP)"),
    "phases": phases,
    "targets": {"certificates_per_s": 10000, "server_cpu_us_per_certificate": 100,
                "p99_ms_at_half_peak": 5},
}
u, s, o = phases["unary_closed"], phases["stream_closed"], phases["open_half_peak"]
result["summary"] = {
    "unary_certificates_per_s": u["throughput_per_s"],
    "stream_certificates_per_s": s["throughput_per_s"],
    "peak_certificates_per_s": max(u["throughput_per_s"], s["throughput_per_s"]),
    "server_cpu_us_per_certificate_unary": u.get("server_cpu_us_per_success"),
    "server_cpu_us_per_certificate_stream": s.get("server_cpu_us_per_success"),
    "half_peak_rate_per_s": o["offered_rate_per_s"],
    "half_peak_p50_ms": o["latency_us"]["p50"] / 1000,
    "half_peak_p99_ms": o["latency_us"]["p99"] / 1000,
    "client_cpu_us_per_request_unary": u.get("client_cpu_us_per_request"),
    "crypto_floor_us_per_certificate": round(floor_us, 1),
}
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

def fmt(v, scale=1.0, digits=0):
    return "-" if v is None else "%.*f" % (digits, v / scale)

print()
print("pkid issuance benchmark: %d CPUs, %g s per phase after %g s warm-up"
      % (os.cpu_count(), secs, warm))
cols = ("phase", "certs/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
        "srv us/cert", "srv cores", "cli us/req", "errors")
rows = []
names = {"unary_closed": "unary, %d in flight" % u.get("concurrency", 0),
         "stream_closed": "stream, %dx%d" % (s.get("concurrency", 0), s.get("stream_requests", 0)),
         "open_half_peak": "open loop %.0f/s" % o.get("offered_rate_per_s", 0)}
for n, p in phases.items():
    lat = p["latency_us"]
    rows.append((names[n], fmt(p["throughput_per_s"]), fmt(lat["p50"], 1000, 2),
                 fmt(lat["p90"], 1000, 2), fmt(lat["p99"], 1000, 2), fmt(lat["p99_9"], 1000, 2),
                 fmt(lat["max"], 1000, 2), fmt(p.get("server_cpu_us_per_success"), 1, 1),
                 fmt(p.get("server_cpu_cores"), 1, 2), fmt(p.get("client_cpu_us_per_request"), 1, 1),
                 str(p["errors_total"]) + ("" if not p["errors"] else " " + json.dumps(p["errors"]))))
widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths)))
print(line(cols))
for r in rows:
    print(line(r))
print("crypto floor: ECDSA P-256 sign %.0f/s, verify %.0f/s on one core: %.1f us per certificate"
      % (sign, verify, floor_us))
print("targets (PRODUCT.md): >= 10000 certs/s; <= 100 us server CPU per cert; p99 <= 5 ms at half peak")
print("results: %s" % out)
EOF
