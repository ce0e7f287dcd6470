#!/usr/bin/env bash
# bench/crl_under_load.sh: pkid's OCSP throughput while its CRLs are
# rebuilt continuously, beside the same with no rebuilds.
#
#   bench/crl_under_load.sh [--revoked N] [--keys K] [--seconds S]
#                           [--warmup S] [--conns C] [--rounds R] [--out FILE]
#                           [--work DIR] [--keep]
#                           [--pkid F --pkictl F --ocsp-load F]
#
# Builds //server:pkid, //client:pkictl and //bench:ocsp_load with
# --config=opt (unless all three are given), makes a demo PKI with
# `pkictl ceremony demo`, and:
#   1. starts pkid (127.0.0.1, ports the kernel picks) and revokes N
#      certificates of agents-ca (default 100000): they are issued over
#      IssueStream (Debian's python3-grpcio, streams of 5000, two at a
#      time) for K P-256 keys (default: one per 2000 certificates), then
#      revoked with K Revoke calls with revoke_same_key (keyCompromise),
#      the fastest way in through the API (pki-agent's share lifted:
#      --identity-rate 0 --identity-max-in-flight 20000; requests refused
#      or left unanswered are sent again, and counted: resent=);
#      one more certificate is issued (pkictl issue), good, to be asked
#      about over OCSP; pkid is stopped;
#   2. "quiet": pkid restarted on the same journal with CRL rebuilds a week
#      apart (--crl-delta-interval-s 604800 --crl-interval-s 31536000): it
#      builds each CA's CRL once at start, then none; after the first
#      build, --warmup seconds, then bench/ocsp_load (keep-alive POST, C
#      connections, default 16) for S seconds (default 10);
#   3. "rebuilding": the same with --crl-delta-interval-s 1
#      --crl-batch-ms 100: every CA's complete and delta CRLs rebuilt,
#      signed, journaled and written to pki/crl every second, agents-ca's
#      with its N entries.
# Phases 2 and 3 alternate --rounds times (default 2: quiet, rebuilding,
# quiet, rebuilding), since on a shared machine the load of the moment
# moves throughput more than the rebuilds do; each pkid restart replays
# the journal. For each phase: OCSP responses/s, pkid's CPU per response (ocsp_load
# --pid, from /proc/PID/stat as bench/proc_cpu.c reads it), and the CRL
# builds inside the window (crl_published log lines, with their build_ms
# and the agents-ca CRL's size: its delta is as large, as the base CRL
# is the one before the revocations until --crl-interval-s, an hour,
# passes). Prints one table (each round and the means) and, with --out FILE,
# writes the numbers as JSON. Traffic goes only to 127.0.0.1; every process
# started here is stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PY=/usr/bin/python3

REVOKED=100000
KEYS=""
SECS=10
WARMUP=2
CONNS=16
ROUNDS=2
WORK=""
KEEP=0
OUT=""
PKID="" PKICTL="" OCSP_LOAD=""

die() { echo "crl_under_load.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --revoked) REVOKED=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --pkid) PKID=$2; shift 2 ;;
    --pkictl) PKICTL=$2; shift 2 ;;
    --ocsp-load) OCSP_LOAD=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
done
[[ $REVOKED =~ ^[0-9]+$ ]] && [ "$REVOKED" -ge 1 ] || die "--revoked wants a count"
# At most 2000 certificates a key: pkid resets the stream of a Revoke
# whose answer lists much more (6000 serials, about 240 KB, here).
[ -n "$KEYS" ] || KEYS=$(((REVOKED + 1999) / 2000))
[[ $KEYS =~ ^[0-9]+$ ]] && [ "$KEYS" -ge 1 ] && [ "$KEYS" -le "$REVOKED" ] ||
  die "--keys wants 1 to --revoked"
[[ $SECS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--seconds wants a number"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds wants a count"
[[ $WARMUP =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--warmup wants a number"

if [ -z "$PKID" ] || [ -z "$PKICTL" ] || [ -z "$OCSP_LOAD" ]; then
  (cd "$REPO" && bazel build --config=opt //server:pkid //client:pkictl //bench:ocsp_load) ||
    die "build failed"
  # Not the bazel-bin symlink: another build may have pointed it elsewhere.
  BIN=$(cd "$REPO" && bazel info --config=opt bazel-bin 2>/dev/null)
  PKID=${PKID:-$BIN/server/pkid}
  PKICTL=${PKICTL:-$BIN/client/pkictl}
  OCSP_LOAD=${OCSP_LOAD:-$BIN/bench/ocsp_load}
fi
for b in "$PKID" "$PKICTL" "$OCSP_LOAD"; do [ -x "$b" ] || die "not an executable: $b"; done

if [ -z "$WORK" ]; then
  WORK=$REPO/bench/.work/crl-under-load-$$
  CLEAN_WORK=1
else
  CLEAN_WORK=0
fi
[ "$KEEP" = 1 ] && CLEAN_WORK=0
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# start_pkid and stop_pkid (bench/pkid.sh).
source "$HERE/pkid.sh"
cleanup() {
  stop_pkid
  if [ "$CLEAN_WORK" = 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_pkid with the limits of one identity lifted (bench/pkid.sh); this
# bench needs the OCSP listener.
start_pkid_ocsp() {
  start_pkid "$@" --identity-rate 0 --identity-max-in-flight 20000
  [ -n "$OCSP_PORT" ] || die "pkid has no OCSP listener"
}

# published LOG: crl_published lines so far.
published() { grep -c '"event":"crl_published"' "$1" 2>/dev/null || true; }

echo "== demo PKI in $WORK/pki" >&2
"$PKICTL" ceremony demo --out "$WORK/pki" >"$WORK/ceremony.log" 2>&1 ||
  { cat "$WORK/ceremony.log" >&2; die "pkictl ceremony demo failed"; }

echo "== revoking $REVOKED certificates ($KEYS keys, IssueStream, then revoke_same_key)" >&2
start_pkid_ocsp "$WORK/pkid-revoke.log"
mkdir -p "$WORK/gen"
protoc --proto_path="$REPO/proto" --python_out="$WORK/gen" "$REPO/proto/pki/v1/pki.proto" ||
  die "protoc failed (Debian's protobuf-compiler)"
cat >"$WORK/revoke.py" <<'PYEOF'
# Issues N certificates for K keys over IssueStream, then revokes them by
# key (revoke_same_key, keyCompromise): K Revoke calls for N revocations.
import os, sys, threading, time
import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
sys.path.insert(0, sys.argv[1])
from pki.v1 import pki_pb2
pki, port, n, k = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
agent = os.path.join(pki, "service-certificates/agents/pki-agent/pki-agent-client")
creds = grpc.ssl_channel_credentials(
    root_certificates=open(os.path.join(pki, "root-ca/certs/root-ca.crt"), "rb").read(),
    private_key=open(agent + ".key", "rb").read(),
    certificate_chain=open(agent + ".crt", "rb").read() + open(agent + "-chain.crt", "rb").read())
ch = grpc.secure_channel("127.0.0.1:%d" % port, creds, options=[
    ("grpc.ssl_target_name_override", "pki-ca.cybersec-framework.local"),
    ("grpc.max_receive_message_length", -1)])
csrs = []
for _ in range(k):
    key = ec.generate_private_key(ec.SECP256R1())
    csrs.append(x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crl-bench")])).sign(
            key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
stream = ch.stream_stream("/pki.v1.Pki/IssueStream",
                          request_serializer=pki_pb2.IssueRequest.SerializeToString,
                          response_deserializer=pki_pb2.IssueResponse.FromString)
first = [None] * k
lock = threading.Lock()
# run(ids, got, errors): one IssueStream for request ids |ids|; the ids
# answered go to |got|. Those refused for the identity's share
# (RESOURCE_EXHAUSTED), or left unanswered by a stream that ended OK, are
# sent again.
def run(ids, got, errors):
    reqs = (pki_pb2.IssueRequest(csr=csrs[i % k], usage=pki_pb2.USAGE_CLIENT, request_id=i)
            for i in ids)
    try:
        for r in stream(reqs, timeout=600):
            if r.status_code == 8:  # RESOURCE_EXHAUSTED: over the identity's share
                continue
            if r.status_code != 0:
                raise RuntimeError("request %d: status %d: %s" % (r.request_id, r.status_code,
                                                                   r.status_message))
            if r.request_id < k:
                first[r.request_id] = r.serial
            with lock:
                got.add(r.request_id)
    except Exception as e:  # a thread's exception would be lost
        with lock:
            errors.append(str(e))
CHUNK = 5000
t0 = time.time()
got, errors, resent = set(), [], 0
todo = list(range(n))
for attempt in range(5):
    chunks = [todo[s:s + CHUNK] for s in range(0, len(todo), CHUNK)]
    while chunks:
        ts = [threading.Thread(target=run, args=(c, got, errors)) for c in chunks[:2]]
        chunks = chunks[2:]
        for t in ts: t.start()
        for t in ts: t.join()
    if errors:
        sys.exit("IssueStream failed: " + "; ".join(errors[:3]))
    todo = [i for i in todo if i not in got]
    if not todo:
        break
    resent += len(todo)
    print("IssueStream: %d requests refused for the identity's share or unanswered; "
          "sending them again" % len(todo), file=sys.stderr)
if todo or None in first:
    sys.exit("issued %d of %d" % (len(got), n))
t1 = time.time()
revoke = ch.unary_unary("/pki.v1.Pki/Revoke",
                        request_serializer=pki_pb2.RevokeRequest.SerializeToString,
                        response_deserializer=pki_pb2.RevokeResponse.FromString)
revoked = 0
for s in first:
    r = revoke(pki_pb2.RevokeRequest(serial=s,
                                     reason=pki_pb2.REVOCATION_REASON_KEY_COMPROMISE,
                                     revoke_same_key=True), timeout=600)
    revoked += len(r.revoked_serials)
t2 = time.time()
if revoked != n:
    sys.exit("revoked %d of %d" % (revoked, n))
print("issued=%d issue_s=%.1f resent=%d revoked=%d revoke_s=%.1f keys=%d"
      % (n, t1 - t0, resent, revoked, t2 - t1, k))
PYEOF
REV_LINE=$("$PY" "$WORK/revoke.py" "$WORK/gen" "$WORK/pki" "$PORT" "$REVOKED" "$KEYS") ||
  { tail -n 20 "$WORK/pkid-revoke.log" >&2; die "issuing and revoking failed"; }
echo "   $REV_LINE" >&2
# The certificate asked about over OCSP: good, issued online.
mkdir -p "$WORK/ocsp"
"$PKICTL" issue --pki "$WORK/pki" --as pki-agent --server "127.0.0.1:$PORT" \
  --service pki-agent --usage server --out-cert "$WORK/ocsp/leaf.pem" \
  --out-key "$WORK/ocsp/leaf.key" --out-chain "$WORK/ocsp/chain.pem" \
  >"$WORK/ocsp/issue.log" 2>&1 || { cat "$WORK/ocsp/issue.log" >&2; die "pkictl issue failed"; }
sed -n '1,/-----END CERTIFICATE-----/p' "$WORK/ocsp/chain.pem" >"$WORK/ocsp/issuer.pem"
openssl ocsp -issuer "$WORK/ocsp/issuer.pem" -cert "$WORK/ocsp/leaf.pem" \
  -reqout "$WORK/ocsp/req.der" -no_nonce >/dev/null 2>&1 || die "openssl ocsp -reqout failed"
stop_pkid

# phase NAME PKID_ARGS...: one measured window; leaves NAME.line (ocsp_load)
# and NAME.builds (the crl_published lines inside the window).
phase() {
  local name=$1 log=$WORK/pkid-$1.log i
  shift
  start_pkid_ocsp "$log" "$@"
  # Every online CA's first CRLs (agents-ca's with every entry).
  for i in $(seq 1 600); do
    [ "$(published "$log")" -ge 1 ] && grep -q '"ca":"agents-ca"' <(grep crl_published "$log") &&
      break
    sleep 0.1
  done
  sleep "$WARMUP"
  local before after line
  before=$(published "$log")
  line=$("$OCSP_LOAD" --port "$OCSP_PORT" --path "$OCSP_PATH" --req "$WORK/ocsp/req.der" \
    --conns "$CONNS" --seconds "$SECS" --pid "$PKID_PID") ||
    { echo "$line" >&2; die "ocsp_load failed"; }
  after=$(published "$log")
  echo "$line" >"$WORK/$name.line"
  grep '"event":"crl_published"' "$log" | sed -n "$((before + 1)),${after}p" >"$WORK/$name.builds"
  echo "   $name: $line; CRL builds in the window: $((after - before))" >&2
  stop_pkid
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round, quiet: no CRL rebuilds (intervals of a week), ocsp_load $CONNS connections, ${SECS}s" >&2
  phase "quiet-$round" --crl-delta-interval-s 604800 --crl-interval-s 31536000
  echo "== round $round, rebuilding: every CRL rebuilt each second (--crl-delta-interval-s 1 --crl-batch-ms 100)" >&2
  phase "rebuilding-$round" --crl-delta-interval-s 1 --crl-batch-ms 100
done

"$PY" - "$WORK" "$REVOKED" "$SECS" "$ROUNDS" "$REV_LINE" "${OUT:-}" <<'PYEOF'
import json, re, sys
work, revoked, secs, rounds, rev_line, out = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                              int(sys.argv[4]), sys.argv[5], sys.argv[6])
res = {"revoked": revoked, "seconds": secs, "rounds": rounds,
       "setup": dict(re.findall(r"(\w+)=([^ ]+)", rev_line)), "phases": {}}
def phase(name):
    kv = dict(re.findall(r"(\w+)=([^ ]+)", open("%s/%s.line" % (work, name)).read()))
    builds = [json.loads(l) for l in open("%s/%s.builds" % (work, name)) if l.strip()]
    agents = [b for b in builds if b.get("ca") == "agents-ca"]
    ms = sorted(float(b["build_ms"]) for b in agents)
    return {
        "ocsp_per_s": float(kv["rate"].rstrip("/s")),
        "responses": int(kv["responses"]), "errors": int(kv["errors"]),
        "server_cpu_s": float(kv.get("server_cpu", "nan").rstrip("s")),
        "server_cpu_us_per_response": float(kv.get("server_cpu_us_per_response", "nan")),
        "crl_builds": len(builds), "agents_ca_builds": len(agents),
        "agents_ca_build_ms_median": ms[len(ms) // 2] if ms else None,
        "agents_ca_build_ms_max": ms[-1] if ms else None,
        "agents_ca_crl_bytes": int(agents[-1]["bytes"]) if agents else None,
    }
names = ["%s-%d" % (k, r) for r in range(1, rounds + 1) for k in ("quiet", "rebuilding")]
for name in names:
    res["phases"][name] = phase(name)
def mean(kind, key):
    v = [res["phases"]["%s-%d" % (kind, r)][key] for r in range(1, rounds + 1)]
    return sum(v) / len(v)
for kind in ("quiet", "rebuilding"):
    res[kind] = {k: mean(kind, k) for k in ("ocsp_per_s", "server_cpu_us_per_response",
                                            "crl_builds")}
res["throughput_ratio"] = res["rebuilding"]["ocsp_per_s"] / res["quiet"]["ocsp_per_s"]
res["cpu_per_response_ratio"] = (res["rebuilding"]["server_cpu_us_per_response"] /
                                 res["quiet"]["server_cpu_us_per_response"])
print("CRL regeneration under OCSP load: %d revoked on agents-ca, %.0f s windows, %d round(s)"
      % (revoked, secs, rounds))
print("%-15s %10s %12s %11s %17s %10s" % ("phase", "OCSP/s", "CPU us/resp", "CRL builds",
                                          "agents-ca ms p50", "CRL bytes"))
for name in names:
    p = res["phases"][name]
    print("%-15s %10.0f %12.2f %11d %17s %10s" % (
        name, p["ocsp_per_s"], p["server_cpu_us_per_response"], p["crl_builds"],
        "-" if p["agents_ca_build_ms_median"] is None else "%.1f" % p["agents_ca_build_ms_median"],
        "-" if p["agents_ca_crl_bytes"] is None else p["agents_ca_crl_bytes"]))
for kind in ("quiet", "rebuilding"):
    p = res[kind]
    print("%-15s %10.0f %12.2f %11.1f" % (kind + " mean", p["ocsp_per_s"],
                                          p["server_cpu_us_per_response"], p["crl_builds"]))
print("rebuilding/quiet: throughput %.3f, server CPU per response %.3f"
      % (res["throughput_ratio"], res["cpu_per_response_ratio"]))
if out:
    json.dump(res, open(out, "w"), indent=1)
    print("json: " + out)
PYEOF
