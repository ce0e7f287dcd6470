#!/bin/bash
# bench/audit_cost.sh: what the audit trail costs the journal, measured.
#
#   bench/audit_cost.sh [--seconds S] [--baseline-pkid F] [--pkid F --pkictl F --loadgen F]
#
# For each pkid (this tree's, and with --baseline-pkid an older build, e.g.
# one from before the audit records, run the same way one after the other),
# on a fresh demo tree and journal:
#   1. unary Issue, closed loop, 64 in flight, S seconds (loadgen as
#      pki-agent): certificates/s, the server's CPU per certificate, and the
#      journal's bytes and records per certificate (pkictl journal verify);
#   2. a flood of refusals, S seconds: loadgen as redis asking for
#      postgres's certificate, every request PERMISSION_DENIED: refusals/s
#      and the journal records and bytes the flood added (with the audit
#      trail: one aggregated record per window, not one per refusal).
# It prints one JSON object per pkid and phase. Nothing is asserted.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER_PHASE=10
BASELINE=""
PKID="" PKICTL="" LOADGEN=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
    --baseline-pkid) BASELINE=$2; shift 2 ;;
    --pkid) PKID=$2; shift 2 ;;
    --pkictl) PKICTL=$2; shift 2 ;;
    --loadgen) LOADGEN=$2; shift 2 ;;
    *) echo "audit_cost.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

die() { echo "audit_cost.sh: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/audit-cost.XXXXXX")
# shellcheck source=bench/pkid.sh
. "$top/bench/pkid.sh"
trap 'stop_pkid; rm -rf "$WORK"' EXIT
if [ -z "$PKID" ] || [ -z "$PKICTL" ] || [ -z "$LOADGEN" ]; then
  BIN=$(opt_bin //server:pkid //client:pkictl //bench:loadgen)
  PKID=${PKID:-$BIN/server/pkid}
  PKICTL=${PKICTL:-$BIN/client/pkictl}
  LOADGEN=${LOADGEN:-$BIN/bench/loadgen}
fi

# journal_totals prints "records bytes" of the journal.
journal_totals() {
  local out records bytes
  out=$("$PKICTL" journal verify "$WORK/journal")
  records=$(sed -n 's/^records: *\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
  bytes=$(du -cb "$WORK"/journal/*.seg | tail -n 1 | cut -f1)
  echo "${records:-0} $bytes"
}

measure() {
  local label=$1 binary=$2
  rm -rf "$WORK/pki" "$WORK/journal"
  "$PKICTL" ceremony demo --out "$WORK/pki" >/dev/null
  local saved=$PKID
  PKID=$binary
  start_pkid "$WORK/pkid-$label.log" --identity-rate 0 --identity-max-in-flight 4096
  PKID=$saved
  local r0 b0 r1 b1 r2 b2
  read -r r0 b0 < <(journal_totals)
  "$LOADGEN" --target "127.0.0.1:$PORT" --pki "$WORK/pki" --server-pid "$PKID_PID" \
    --duration "$SECONDS_PER_PHASE" --warmup 1 --concurrency 64 --label "$label issue" \
    >"$WORK/issue.json"
  read -r r1 b1 < <(journal_totals)
  local redis="$WORK/pki/service-certificates/infrastructure/redis/redis-client"
  "$LOADGEN" --target "127.0.0.1:$PORT" --root "$WORK/pki/root-ca/certs/root-ca.crt" \
    --cert "$redis.crt" --chain "$redis-chain.crt" --key "$redis.key" --service postgres \
    --usage server --server-pid "$PKID_PID" --duration "$SECONDS_PER_PHASE" --warmup 0 \
    --concurrency 64 --label "$label refusals" >"$WORK/refused.json"
  # The last window of refusals is journaled at the drain.
  stop_pkid
  read -r r2 b2 < <(journal_totals)
  /usr/bin/python3 - "$WORK/issue.json" "$WORK/refused.json" "$label" \
    "$r0" "$b0" "$r1" "$b1" "$r2" "$b2" <<'EOF'
import json, sys
issue, refused = (json.load(open(p)) for p in sys.argv[1:3])
label = sys.argv[3]
r0, b0, r1, b1, r2, b2 = (int(x) for x in sys.argv[4:10])
ok = max(issue["successes"], 1)
print(json.dumps({"pkid": label, "phase": "issue", "certificates_per_s": issue["throughput_per_s"],
                  "server_cpu_us_per_cert": issue.get("server_cpu_us_per_success"),
                  "journal_records_per_cert": round((r1 - r0) / ok, 3),
                  "journal_bytes_per_cert": round((b1 - b0) / ok, 1)}))
n = refused["errors_total"]
print(json.dumps({"pkid": label, "phase": "refusal_flood", "refusals": n,
                  "refusals_per_s": round(n / max(refused["duration_s"], 1e-9), 1),
                  "errors": refused["errors"],
                  "journal_records_added": r2 - r1, "journal_bytes_added": b2 - b1}))
EOF
}

measure current "$PKID"
if [ -n "$BASELINE" ]; then measure baseline "$BASELINE"; fi
