#!/usr/bin/env bash
# bench/profile.sh: where pkid's CPU goes under issuance load, in
# microseconds per issued certificate, kernel included (issue 16).
#
#   bench/profile.sh [--seconds S] [--concurrency N] [--stream | --rate R] [--top N]
#                    [--out FILE] [--work DIR] [--keep] [--callgraph | --syscalls]
#
# pkid (opt build, with its symbol table) runs on a fresh demo tree, and
# bench/loadgen drives unary Issue (or IssueStream with --stream) at N in
# flight (default 64 calls, or 8 streams of 64, as bench/run.sh), or open
# loop at R calls a second with --rate (run.sh's sweep). After a
# 3 s warm-up, perf samples every pkid thread on the cpu-clock software
# event (hardware counters are not available here) for S seconds (default
# 10), user space and kernel alike. Each sample is 1/F s of CPU; their
# sum over the certificates pkid issued in the window (pkid_issued_total
# from /metrics, before and after) is CPU per certificate, printed by
# thread (the loop is the process's first thread; workers, committer, ...:
# their names, pthread_setname_np), by user and kernel, and by function:
# the top N (default 30). Beside it,
# the crypto floor (bench/ecdsa_speed: 1 verify + 2 signs, raw BoringSSL).
# Sampling has noise, where callgrind (bench/instructions.sh) does not; but
# it sees the kernel, the scheduler and the cache misses that instruction
# counts do not. Writes FILE (default bench/profile.json).
# --callgraph records call chains too (perf record -g) and, with --keep,
# leaves DIR/perf.data for `perf report -i DIR/perf.data --no-children`.
# --syscalls counts instead of sampling (perf stat, per thread): system
# calls, futex calls and context switches per certificate, by thread,
# since in a VM a wake-up costs far more than the call that asks for it.
# Traffic goes only to 127.0.0.1. Every process started here is stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SECS=10
CONCURRENCY=""
STREAM=0
RATE=""
TOP=30
FREQ=2999
OUT=$REPO/bench/profile.json
WORK=""
KEEP=0
CALLGRAPH=()
SYSCALLS=0
die() {
  echo "profile.sh: $*" >&2
  exit 1
}
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --stream) STREAM=1; shift ;;
    --rate) RATE=$2; shift 2 ;;
    --top) TOP=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --callgraph) CALLGRAPH=(-g); shift ;;
    --syscalls) SYSCALLS=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
[ "$STREAM" = 1 ] && [ -n "$RATE" ] && die "--rate drives unary calls; it does not go with --stream"
[ "$SYSCALLS" = 1 ] && [ ${#CALLGRAPH[@]} -gt 0 ] && die "--syscalls counts; it does not go with --callgraph"
command -v perf >/dev/null || die "needs perf (Debian's linux-perf package)"

source "$HERE/pkid.sh"
BIN=$(opt_bin //server:pkid //client:pkictl //bench:loadgen //bench:ecdsa_speed)
PKID=$BIN/server/pkid
if [ -z "$WORK" ]; then WORK=$REPO/bench/.work/profile-$$; fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
LOAD_PID=""
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
  stop_pkid
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/client/pkictl" ceremony demo --out "$WORK/pki" >"$WORK/ceremony.log" 2>&1 ||
  die "pkictl ceremony demo failed"
if [ "$SYSCALLS" = 0 ]; then # counts need no floor beside them
  echo "== crypto floor (ecdsa_speed)" >&2
  "$BIN/bench/ecdsa_speed" >"$WORK/floor.json"
fi
echo "== pkid" >&2
start_pkid "$WORK/pkid.log" --identity-rate 0 --identity-max-in-flight 4096
for i in $(seq 1 600); do
  grep -q '"event":"ceremony_import_done"' "$WORK/pkid.log" && break
  sleep 0.1
done

MODE=()
[ -n "$CONCURRENCY" ] || CONCURRENCY=$([ "$STREAM" = 1 ] && echo 8 || echo 64)
[ "$STREAM" = 1 ] && MODE=(--stream --stream-requests 64)
[ -n "$RATE" ] && MODE=(--rate "$RATE")
"$BIN/bench/loadgen" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --duration $((SECS + 5)) \
  --warmup 0 --concurrency "$CONCURRENCY" --threads 1 --connections 4 "${MODE[@]}" \
  >"$WORK/load.json" &
LOAD_PID=$!
sleep 3
BEFORE=$(issued_total "$ADMIN_PORT")
if [ "$SYSCALLS" = 1 ]; then
  echo "== perf stat, ${SECS}s" >&2
  perf stat -x, --per-thread -e raw_syscalls:sys_enter,syscalls:sys_enter_futex,context-switches \
    -p "$PKID_PID" -o "$WORK/stat.csv" -- sleep "$SECS" 2>"$WORK/perf.log" ||
    { cat "$WORK/perf.log" >&2; die "perf stat failed"; }
else
  echo "== perf record, ${SECS}s" >&2
  perf record -q -e cpu-clock -F "$FREQ" "${CALLGRAPH[@]}" -p "$PKID_PID" -o "$WORK/perf.data" \
    -- sleep "$SECS" 2>"$WORK/perf.log" || { cat "$WORK/perf.log" >&2; die "perf record failed"; }
fi
AFTER=$(issued_total "$ADMIN_PORT")
wait "$LOAD_PID" || die "loadgen failed"
LOAD_PID=""
LOOP_TID=$PKID_PID # the loop is pkid's first thread; stop_pkid forgets the pid
stop_pkid

if [ "$SYSCALLS" = 1 ]; then
  /usr/bin/python3 - "$WORK/stat.csv" "$LOOP_TID" "$BEFORE" "$AFTER" "$OUT" "$STREAM" "$RATE" <<'EOF'
import collections, json, sys
stat, loop_tid, before, after, out, stream, rate = sys.argv[1:8]
certs = int(after) - int(before)
if certs <= 0:
    sys.exit("profile.sh: no certificate issued in the window")
names = {"raw_syscalls:sys_enter": "syscalls", "syscalls:sys_enter_futex": "futex",
         "context-switches": "context_switches"}
by = collections.defaultdict(collections.Counter)
for line in open(stat):
    f = line.rstrip("\n").split(",")
    if len(f) < 4 or f[3] not in names or not f[1].isdigit():
        continue  # comments, and "<not counted>" for threads that ended
    comm, tid = f[0].rsplit("-", 1)
    role = "loop" if tid == loop_tid else comm if comm.startswith("pkid-") else "other"
    by[role][names[f[3]]] += int(f[1])
total = collections.Counter()
for c in by.values():
    total.update(c)
doc = {
    "bench": "profile_syscalls",
    "mode": "stream" if stream == "1" else "open loop %s/s" % rate if rate else "unary",
    "certificates": certs,
    "per_cert": {k: round(v / certs, 3) for k, v in sorted(total.items())},
    "per_cert_by_thread": {r: {k: round(v / certs, 3) for k, v in sorted(c.items())}
                           for r, c in sorted(by.items())},
}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print("pkid per certificate (%s, perf stat, %d certificates): %s" % (
    doc["mode"], certs, ", ".join("%s %.3f" % kv for kv in doc["per_cert"].items())))
for role, c in doc["per_cert_by_thread"].items():
    print("  %-12s %s" % (role, ", ".join("%s %.3f" % kv for kv in c.items())))
EOF
  exit 0
fi

perf script -G -i "$WORK/perf.data" -F pid,tid,comm,ip,sym,dso 2>/dev/null >"$WORK/samples.txt"
/usr/bin/python3 - "$WORK/samples.txt" "$WORK/floor.json" "$BEFORE" "$AFTER" "$FREQ" \
  "$TOP" "$OUT" "$STREAM" "$RATE" <<'EOF'
import collections, json, re, sys
samples, floor_file, before, after, freq, top, out, stream, rate = sys.argv[1:10]
certs = int(after) - int(before)
if certs <= 0:
    sys.exit("profile.sh: no certificate issued in the window")
us = 1e6 / int(freq) / certs  # one sample, in microseconds per certificate
threads, space, funcs = collections.Counter(), collections.Counter(), collections.Counter()
total = 0
for line in open(samples):
    # "comm PID/TID  ip sym (dso)": comm may hold spaces.
    m = re.match(r"\s*(.*?)\s+(\d+)/(\d+)\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", line)
    if not m:
        continue
    comm, pid, tid, _, sym, dso = m.groups()
    role = "loop" if pid == tid else ("uv-pool" if comm == "pkid" else comm)
    kernel = "kernel" in dso
    sym = sym.split("+0x")[0] if sym and sym != "[unknown]" else "?"
    threads[role] += 1
    space["kernel" if kernel else "user"] += 1
    funcs[(role, ("[k] " if kernel else "") + sym)] += 1
    total += 1
floor = json.load(open(floor_file))
floor_us = 1e6 / floor["ecdsa_p256_verify_per_s"] + 2e6 / floor["ecdsa_p256_sign_per_s"]
doc = {
    "bench": "profile",
    "mode": "stream" if stream == "1" else "open loop %s/s" % rate if rate else "unary",
    "certificates": certs, "samples": total,
    "server_us_per_cert": round(total * us, 1),
    "crypto_floor_us_per_cert": round(floor_us, 1),
    "by_thread_us": {k: round(v * us, 1) for k, v in threads.most_common()},
    "by_space_us": {k: round(v * us, 1) for k, v in space.most_common()},
    "top": [{"thread": r, "function": f, "us": round(v * us, 2)}
            for (r, f), v in funcs.most_common(int(top))],
}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print("pkid CPU per certificate (%s, perf cpu-clock, %d certificates, %d samples): %.1f us; "
      "crypto floor %.1f us (ratio %.2f)" % (doc["mode"], certs, total, total * us, floor_us,
                                             total * us / floor_us))
print("  by thread: " + ", ".join("%s %.1f" % kv for kv in doc["by_thread_us"].items()))
print("  user %.1f, kernel %.1f" % (space["user"] * us, space["kernel"] * us))
for t in doc["top"]:
    print("  %7.2f us  %-12s %s" % (t["us"], t["thread"], t["function"]))
EOF
