#!/usr/bin/env bash
# bench/instructions.sh: instructions per issued certificate, for the whole
# server, beside the crypto floor counted the same way: a figure that does
# not depend on a noisy machine (issue 16), from valgrind's callgrind.
#
#   bench/instructions.sh [--seconds S] [--concurrency N] [--profile N] [--out FILE]
#                         [--work DIR] [--keep]
#
# 1. pkid (opt build) runs under callgrind on a fresh demo tree; loadgen
#    issues unary Issue calls for a warm-up, then callgrind's counters are
#    zeroed (callgrind_control -z), loadgen runs S seconds (default 10),
#    and the counters are dumped (-d). The instructions of every pkid
#    thread in that window, divided by the certificates pkid issued in it
#    (pkid_issued_total from its /metrics, before and after), is the
#    server's figure. What the kernel does (TLS records' syscalls,
#    fdatasync) is not in it: user-space instructions only.
# 2. bench/crypto_floor runs under callgrind with 100 and with 600 units of
#    one ECDSA P-256 verify and two signs; the difference over 500 is the
#    floor's instructions per certificate, its set-up cancelled out.
# The ratio of the two is printed, and the three numbers written as one
# JSON object to FILE (default bench/instructions.json). With --profile N,
# the N functions with the most instructions of their own in the window
# (callgrind_annotate; the copies keep their symbol tables, so functions
# are named, but not lines), each per certificate: where the instructions
# above the floor go.
#
# Valgrind 3.19 cannot read clang's DWARF 5, so the binaries run from
# copies without debug information (objcopy --strip-debug): totals need no
# symbols. Under callgrind pkid runs some 50 times slower, so the window
# holds a few thousand certificates; the count is repeatable to well under
# 1% (the boundaries of the window cut at most --concurrency calls).
# Traffic goes only to 127.0.0.1. Every process started here is stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SECS=10
CONCURRENCY=16
PROFILE=0
OUT=$REPO/bench/instructions.json
WORK=""
KEEP=0
die() {
  echo "instructions.sh: $*" >&2
  exit 1
}
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
  die "needs valgrind (Debian's valgrind package)"

source "$HERE/pkid.sh"
BIN=$(opt_bin //server:pkid //client:pkictl //bench:loadgen //bench:crypto_floor)
if [ -z "$WORK" ]; then WORK=$REPO/bench/.work/instructions-$$; fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cleanup() {
  stop_pkid
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

objcopy --strip-debug "$BIN/server/pkid" "$WORK/pkid"
objcopy --strip-debug "$BIN/bench/crypto_floor" "$WORK/crypto_floor"
"$BIN/client/pkictl" ceremony demo --out "$WORK/pki" >"$WORK/ceremony.log" 2>&1 ||
  die "pkictl ceremony demo failed"

echo "== pkid under callgrind" >&2
# start_pkid_cg is pkid.sh's start_pkid with valgrind in front; it waits
# for the ceremony import, so the window holds issuances only.
start_pkid_cg() {
  local log=$WORK/pkid.log
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$WORK/pkid" \
    --pki "$WORK/pki" --journal "$WORK/journal" --listen 127.0.0.1:0 \
    --ocsp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --identity-rate 0 --identity-max-in-flight 4096 2>"$log" &
  PKID_PID=$!
  local i
  for i in $(seq 1 1200); do
    grep -q '"event":"ceremony_import_done"' "$log" && break
    kill -0 "$PKID_PID" 2>/dev/null || break
    sleep 0.1
  done
  PORT=$(sed -n 's/.*"event":"listening","grpc":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$log" | head -n 1)
  ADMIN=$(sed -n 's/.*"event":"listening","admin":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$log" | head -n 1)
  [ -n "$PORT" ] && [ -n "$ADMIN" ] || { cat "$log" >&2; die "pkid did not start"; }
}
start_pkid_cg

load() {
  "$BIN/bench/loadgen" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --duration "$1" \
    --warmup 0 --concurrency "$CONCURRENCY" --threads 1 --connections 2 >"$WORK/$2.json"
}

load 3 warmup
callgrind_control -z "$PKID_PID" >/dev/null
BEFORE=$(issued_total "$ADMIN")
load "$SECS" window
AFTER=$(issued_total "$ADMIN")
callgrind_control -d "$PKID_PID" >/dev/null
stop_pkid
# The dump of the window is the last file callgrind wrote (callgrind.out.N);
# its "summary:" line is the instructions executed since the zeroing.
DUMP=$(ls -t "$WORK"/callgrind.out.* | head -n 1)
SERVER_IR=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$DUMP" | head -n 1)
[ -n "$SERVER_IR" ] || die "no summary in $DUMP"

echo "== crypto floor under callgrind" >&2
floor_ir() {
  valgrind --tool=callgrind --callgrind-out-file="$WORK/floor.$1" "$WORK/crypto_floor" "$1" \
    >/dev/null 2>"$WORK/floor.$1.log"
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/floor.$1.log"
}
F1=$(floor_ir 100)
F2=$(floor_ir 600)

if [ "$PROFILE" -gt 0 ]; then
  echo "== the window's top $PROFILE functions by their own instructions, per certificate" >&2
  callgrind_annotate --threshold=100 "$DUMP" 2>/dev/null |
    /usr/bin/python3 -c '
import re, sys
n, certs = int(sys.argv[1]), int(sys.argv[2])
rows = []
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    fn = m.group(2)
    # Inclusive frames of the thread entry points are not a function'"'"'s own.
    if re.search(r"clone|start_thread|libc_start|below main|\?\?\?:main |0x0000", fn):
        continue
    rows.append((int(m.group(1).replace(",", "")), fn))
for ir, fn in rows[:n]:
    print("%10.0f  %s" % (ir / certs, re.sub(r" \[.*\]$", "", fn)))
' "$PROFILE" "$((AFTER - BEFORE))"
fi

/usr/bin/python3 - "$SERVER_IR" "$BEFORE" "$AFTER" "$F1" "$F2" "$OUT" <<'EOF'
import json, sys
server_ir, before, after, f1, f2 = (int(x) for x in sys.argv[1:6])
certs = after - before
if certs <= 0:
    sys.exit("instructions.sh: no certificate issued in the window")
floor = (f2 - f1) / 500
per_cert = server_ir / certs
doc = {
    "bench": "instructions",
    "certificates": certs,
    "server_instructions": server_ir,
    "server_instructions_per_cert": round(per_cert),
    "floor_instructions_per_cert": round(floor),
    "server_over_floor": round(per_cert / floor, 3),
}
with open(sys.argv[6], "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print("instructions per certificate: server %.0f, crypto floor (1 verify + 2 signs) %.0f, "
      "ratio %.3f over %d certificates" % (per_cert, floor, per_cert / floor, certs))
print(json.dumps(doc))
EOF
