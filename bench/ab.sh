#!/usr/bin/env bash
# bench/ab.sh: two pkid builds, measured in turns under the same load, so
# that a change of a few percent shows through this machine's noise
# (issue 16: "each measured on its own, one after the other").
#
#   bench/ab.sh --a PKID_A --b PKID_B [--rounds N] [--seconds S] [--out FILE]
#               [--work DIR] [--keep] [-- LOADGEN_ARGS...]
#
# Each round runs A, then B: a fresh journal, pkid started on 127.0.0.1
# (every port chosen by the kernel), bench/loadgen for S seconds (default
# 12) after a 2 s warm-up, with LOADGEN_ARGS (default: unary Issue, 64 in
# flight; e.g. `-- --rate 4000` for open loop), then pkid stopped. Single
# runs here swing by up to a quarter; alternating spreads the machine's
# slow moments over both. Prints each run and, per build, the mean of
# certificates/s, server CPU per certificate, the client's CPU per request
# and p99, and writes every run to FILE (default bench/ab.json).
# Traffic goes only to 127.0.0.1. Every process started here is stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
A="" B="" ROUNDS=4 SECS=12 OUT=$REPO/bench/ab.json WORK="" KEEP=0
die() {
  echo "ab.sh: $*" >&2
  exit 1
}
while [ $# -gt 0 ]; do
  case "$1" in
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --) shift; break ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -x "$A" ] && [ -x "$B" ] || die "--a and --b must name two pkid binaries"
A=$(cd "$(dirname "$A")" && pwd)/$(basename "$A")
B=$(cd "$(dirname "$B")" && pwd)/$(basename "$B")

source "$HERE/pkid.sh"
BIN=$(opt_bin //client:pkictl //bench:loadgen)
if [ -z "$WORK" ]; then WORK=$REPO/bench/.work/ab-$$; fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cleanup() {
  stop_pkid
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/client/pkictl" ceremony demo --out "$WORK/pki" >"$WORK/ceremony.log" 2>&1 ||
  die "pkictl ceremony demo failed"
for r in $(seq 1 "$ROUNDS"); do
  for side in a b; do
    PKID=$([ "$side" = a ] && echo "$A" || echo "$B")
    rm -rf "$WORK/journal"
    start_pkid "$WORK/pkid-$side.log" --identity-rate 0 --identity-max-in-flight 4096
    "$BIN/bench/loadgen" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --server-pid "$PKID_PID" \
      --duration "$SECS" --warmup 2 --label "$side" "$@" >"$WORK/$side.$r.json" ||
      die "loadgen failed against $PKID"
    stop_pkid
  done
done

/usr/bin/python3 - "$WORK" "$ROUNDS" "$A" "$B" "$OUT" <<'EOF'
import json, statistics, sys
work, rounds, a, b, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
fields = [("certs/s", lambda d: d["throughput_per_s"]),
          ("srv us/cert", lambda d: d["server_cpu_us_per_success"]),
          ("cli us/req", lambda d: d["client_cpu_us_per_request"]),
          ("p99 ms", lambda d: d["latency_us"]["p99"] / 1000)]
runs = {"a": [], "b": []}
print("%-6s %-5s " % ("round", "build") + "  ".join("%12s" % f for f, _ in fields))
for r in range(1, rounds + 1):
    for side in "ab":
        d = json.load(open("%s/%s.%d.json" % (work, side, r)))
        runs[side].append(d)
        print("%-6d %-5s " % (r, side) + "  ".join("%12.2f" % g(d) for _, g in fields))
means = {s: {f: statistics.mean(g(d) for d in runs[s]) for f, g in fields} for s in "ab"}
for s, path in (("a", a), ("b", b)):
    print("mean   %-5s " % s + "  ".join("%12.2f" % means[s][f] for f, _ in fields) + "  " + path)
print("b / a        " + "  ".join("%12.3f" % (means["b"][f] / means["a"][f]) for f, _ in fields))
with open(out, "w") as f:
    json.dump({"bench": "ab", "a": a, "b": b, "rounds": rounds, "means": means, "runs": runs},
              f, indent=1)
    f.write("\n")
EOF
