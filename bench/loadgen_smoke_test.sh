#!/usr/bin/env bash
# loadgen_smoke_test: bench/run.sh --short against the built binaries. It
# asserts only that the results are present and sane (every phase issued
# certificates, nothing failed, the numbers are positive and ordered),
# never that they are fast: speed is measured by bench/run.sh, not by tests.
#
# Usage: loadgen_smoke_test.sh RUN_SH TESTLIB PKID PKICTL LOADGEN ECDSA_SPEED
RUN_SH=$(realpath "$1")
# shellcheck source=/dev/null
. "$2"
PKID=$(realpath "$3")
PKICTL=$(realpath "$4")
LOADGEN=$(realpath "$5")
ECDSA_SPEED=$(realpath "$6")

test_short_run() {
  t_check timeout 120 "$RUN_SH" --short --work "$T_DIR/work" --out "$T_DIR/results.json" \
    --pkid "$PKID" --pkictl "$PKICTL" --loadgen "$LOADGEN" --ecdsa-speed "$ECDSA_SPEED" ||
    return 1
  t_check /usr/bin/python3 - "$T_DIR/results.json" <<'PY' || return 1
import json, sys
r = json.load(open(sys.argv[1]))
floor = r["crypto_floor"]
assert floor["ecdsa_p256_sign_per_s"] > 0 and floor["ecdsa_p256_verify_per_s"] > 0, floor
# Measured before and after pkid's phases; the floor is the faster of each.
assert len(floor["runs"]) == 2, floor
for op in ("ecdsa_p256_sign_per_s", "ecdsa_p256_verify_per_s"):
    assert floor[op] == max(run[op] for run in floor["runs"]), floor
for mode in ("unary", "stream"):
    assert r["ratios"]["server_cpu_over_crypto_floor_" + mode] > 0, r["ratios"]
for name in ("unary_closed", "stream_closed", "open_half_peak"):
    p = r["phases"][name]
    lat = p["latency_us"]
    assert p["successes"] > 0, (name, p)
    assert p["errors_total"] == 0 and p["errors"] == {}, (name, p["errors"])
    assert p["requests"] == p["successes"], (name, p)
    assert p["throughput_per_s"] > 0, (name, p)
    assert lat["count"] == p["successes"], (name, lat)
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], (name, lat)
    assert p["server_cpu_us_per_success"] is not None and p["server_cpu_us_per_success"] > 0, (name, p)
    assert p["client_cpu_us_per_request"] is not None and p["client_cpu_us_per_request"] > 0, (name, p)
    assert p["client_failed"] is False, (name, p)
assert r["phases"]["open_half_peak"]["offered_rate_per_s"] > 0
# pkid's own view of the open-loop phases: its histogram saw calls, and
# its percentiles are ordered; its committer synced, each commit made at
# least one job durable, and it cannot have spent more than the phase's
# wall time in fdatasync (one committer thread).
for p in [r["phases"]["open_half_peak"]] + r["sweep"]:
    srv = p["server_latency_us"]
    assert srv is not None and srv["count"] > 0, p
    assert 0 < srv["p50_us"] <= srv["p99_us"] <= srv["p99_9_us"], srv
    c = p["committer"]
    assert c is not None and c["fsyncs_per_s"] > 0 and c["jobs_per_commit"] >= 1, c
    assert c["fsync_mean_us"] > 0 and c["fsync_p99_us"] > 0, c
    assert 0 < c["fsync_busy_share"] <= 1.05, c
assert r["instructions"] is None  # --short: no callgrind
# Peers are skipped with the binaries given: no CFSSL sweep either.
assert r["peers"]["cfssl_sweep"] == [], r["peers"]
s = r["summary"]
assert s["unary_certificates_per_s"] > 0 and s["stream_certificates_per_s"] > 0, s
print("sane:", json.dumps(s))
PY
  # run.sh stopped the pkid it started.
  local pid
  pid=$(cat "$T_DIR/work/pkid.pid") || return 1
  if kill -0 "$pid" 2>/dev/null; then
    t_log "pkid $pid still running after run.sh"
    kill -TERM "$pid"
    return 1
  fi
}

t_run short_run test_short_run
t_finish
