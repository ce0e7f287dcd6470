#!/usr/bin/env bash
# prometheus_rules_test: deploy/prometheus/ (prometheus.yml and the rule
# files pkid-rules.yml, cert-rules.yml, lb-rules.yml) judged by
# Prometheus' own promtool (Debian's prometheus 2.42, /usr/bin/promtool):
#  - `promtool check config`: prometheus.yml loads, with every rule file
#    it names; `promtool check rules`: every expression parses;
#  - `promtool test rules` with tests/interop/prometheus/<file>_test.yml,
#    series in and alerts out, for every rule: each alert of each file
#    has a case where it fires (checked here, so a new rule cannot go
#    untested), and cases where it must not (pending, below threshold,
#    another instance);
#  - the tests can fail: with every `for:` removed from a copy of the
#    rules, the same tests fail;
#  - deploy/grafana/pkid-dashboard.json is JSON and each panel's
#    expression parses;
#  - a real pkid on a fresh demo tree: its /metrics (admin listener)
#    passes `promtool check metrics`, carries every pkid_* family the
#    rules use, and the CRL families for every CA of the catalogue:
#    complete and delta for each online intermediate, complete for the
#    root (signed at the ceremony), with nextUpdate after thisUpdate, and
#    a successful build counted. pkid's first CRLs (cRLNumber 1) have no
#    delta, which needs a base: it runs with --crl-delta-interval-s 1, so
#    that the second build, with deltas, comes a second later.
# Usage: prometheus_rules_test.sh PKICTL PKID TESTLIB PROMETHEUS_YML RULES_TEST_DIR_FILE CATALOG
#   (PROMETHEUS_YML is deploy/prometheus/prometheus.yml, the rule files
#   beside it; RULES_TEST_DIR_FILE any file of tests/interop/prometheus/)
set -u
PKICTL=$(realpath "$1")
PKID=$(realpath "$2")
source "$3"
PROM_DIR=$(dirname "$(realpath "$4")")
TESTS_DIR=$(dirname "$(realpath "$5")")
CATALOG=$(realpath "$6")
RULE_FILES=(pkid-rules.yml cert-rules.yml lb-rules.yml)
PROMTOOL=${PROMTOOL:-/usr/bin/promtool}

if [ ! -x "$PROMTOOL" ]; then
  echo "no promtool at $PROMTOOL (Debian's prometheus package; deploy/setup.sh installs it)"
  exit 1
fi

PKID_PID=
stop_pkid() {
  if [ -n "$PKID_PID" ]; then
    kill "$PKID_PID" 2>/dev/null
    wait "$PKID_PID" 2>/dev/null
    PKID_PID=
  fi
}
trap stop_pkid EXIT

# scratch_copy DIR: the deployment's configuration and rule files, and the
# tests beside them (test files name the rules by base name).
scratch_copy() {
  mkdir -p "$1" && cp "$PROM_DIR"/*.yml "$1"/ && cp "$TESTS_DIR"/*_test.yml "$1"/
}

test_check_config() {
  scratch_copy "$T_DIR/p" && t_check "$PROMTOOL" check config "$T_DIR/p/prometheus.yml" || return 1
  local f
  for f in "${RULE_FILES[@]}"; do
    grep -qxF "  - $f" "$T_DIR/p/prometheus.yml" || { t_log "prometheus.yml does not load $f"; return 1; }
  done
}

test_check_rules() {
  local f
  for f in "${RULE_FILES[@]}"; do t_check "$PROMTOOL" check rules "$PROM_DIR/$f" || return 1; done
}

test_unit_tests() {
  scratch_copy "$T_DIR/p" || return 1
  local f
  for f in "${RULE_FILES[@]}"; do
    t_check "$PROMTOOL" test rules "$T_DIR/p/${f%.yml}_test.yml" || return 1
  done
}

# Every alert of every rule file has a test case in which it fires.
test_every_rule_tested() {
  python3 - "$PROM_DIR" "$TESTS_DIR" "${RULE_FILES[@]}" <<'PY'
import os, sys, yaml
prom, tests, files = sys.argv[1], sys.argv[2], sys.argv[3:]
bad = 0
for f in files:
    rules = yaml.safe_load(open(os.path.join(prom, f)))
    names = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    t = yaml.safe_load(open(os.path.join(tests, f[:-4] + "_test.yml")))
    assert t["rule_files"] == [f], t["rule_files"]
    fired = {a["alertname"] for case in t["tests"] for a in case.get("alert_rule_test", [])
             if a.get("exp_alerts")}
    quiet = {a["alertname"] for case in t["tests"] for a in case.get("alert_rule_test", [])
             if not a.get("exp_alerts")}
    for n in sorted(names - fired):
        print("  %s: %s never fires in its tests" % (f, n)); bad = 1
    for n in sorted(names - quiet):
        print("  %s: %s has no case where it must stay quiet" % (f, n)); bad = 1
    print("  %s: %d alerts" % (f, len(names)))
sys.exit(bad)
PY
}

# deploy/grafana/pkid-dashboard.json: valid JSON, and every panel's
# expression parses (promtool checks them as recording rules).
test_dashboard() {
  local dash=$PROM_DIR/../grafana/pkid-dashboard.json
  python3 - "$dash" >"$T_DIR/dashboard-rules.yml" <<'PY' || return 1
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
assert len(exprs) >= 10, exprs
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    print("      - record: dashboard:expr_%d\n        expr: %s" % (i, json.dumps(e)))
PY
  t_check "$PROMTOOL" check rules "$T_DIR/dashboard-rules.yml"
}

# Without `for:` the pending cases fire early: the tests must say so.
test_tests_can_fail() {
  scratch_copy "$T_DIR/p" || return 1
  local f
  for f in "${RULE_FILES[@]}"; do
    sed -i '/^ *for: /d' "$T_DIR/p/$f"
    if "$PROMTOOL" test rules "$T_DIR/p/${f%.yml}_test.yml" >/dev/null 2>&1; then
      t_log "the tests of $f pass without any for:"
      return 1
    fi
  done
}

# The catalogue's CAs, root first (deploy/catalog.yaml: cas:, "  - name: X").
catalog_cas() {
  awk '/^cas:/ { f = 1; next } /^[^ #]/ { f = 0 } f && /^  - name: / { print $3 }' "$CATALOG"
}

# sample TEXT FAMILY CA KIND: prints the value of FAMILY{ca,kind}.
sample() {
  grep -E "^$2\{ca=\"$3\",kind=\"$4\"\} " <<<"$1" | awk '{ print $2 }'
}

test_real_pkid_metrics() {
  local cas root ca log=$T_DIR/pkid.log
  mapfile -t cas < <(catalog_cas)
  [ "${#cas[@]}" -ge 2 ] || { t_log "no CAs read from $CATALOG"; return 1; }
  root=${cas[0]}
  "$PKICTL" ceremony demo --out "$T_DIR/pki" >/dev/null || { t_log "ceremony demo failed"; return 1; }
  # Small limits, so that the traffic below is refused by each kind of
  # limit the rules count.
  "$PKID" --pki "$T_DIR/pki" --listen 127.0.0.1:0 --ocsp-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --crl-delta-interval-s 1 --identity-rate 1 \
    --max-conns-per-address 2 2>"$log" &
  PKID_PID=$!
  local admin="" i
  for i in $(seq 1 300); do
    admin=$(grep -oE '"listening","admin":"127\.0\.0\.1:[0-9]+"' "$log" 2>/dev/null |
      head -n 1 | grep -oE '[0-9]+"$' | tr -d '"')
    [ -n "$admin" ] && break
    kill -0 "$PKID_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$admin" ] || { t_log "pkid did not start:"; cat "$log" >&2; return 1; }
  # Every online CA's second build (a complete CRL and its delta).
  local waiting
  for i in $(seq 1 300); do
    waiting=0
    for ca in "${cas[@]:1}"; do
      grep -qE "\"event\":\"crl_published\",\"ca\":\"$ca\",\"number\":\"([2-9]|[1-9][0-9]+)\"" \
        "$log" 2>/dev/null || waiting=1
    done
    [ "$waiting" = 0 ] && break
    sleep 0.1
  done
  # Traffic for the families that appear once counted: calls (one
  # issuance, then more than --identity-rate allows) and connections past
  # --max-conns-per-address (three held open; pkid closes the third).
  local grpc
  grpc=$(grep -oE '"listening","grpc":"127\.0\.0\.1:[0-9]+"' "$log" | head -n 1 |
    grep -oE '[0-9]+"$' | tr -d '"')
  for i in 1 2 3; do
    "$PKICTL" issue --pki "$T_DIR/pki" --as pki-agent --server "127.0.0.1:$grpc" \
      --service redis --usage client --out-cert "$T_DIR/r$i.crt" --out-key "$T_DIR/r$i.key" \
      --out-chain "$T_DIR/r$i-chain.crt" >/dev/null 2>&1
  done
  exec 5<>"/dev/tcp/127.0.0.1/$grpc" 6<>"/dev/tcp/127.0.0.1/$grpc" 7<>"/dev/tcp/127.0.0.1/$grpc"
  sleep 0.5
  exec 5>&- 6>&- 7>&-
  local text
  text=$(curl -sf "http://127.0.0.1:$admin/metrics") || { t_log "GET /metrics failed"; return 1; }
  printf '%s\n' "$text" >"$T_DIR/metrics.txt"
  # Lint: promtool exits non-zero on a malformed exposition or a lint
  # problem (names, units, HELP), and prints them.
  local lint
  if ! lint=$("$PROMTOOL" check metrics <"$T_DIR/metrics.txt" 2>&1); then
    t_log "promtool check metrics: $lint"
    return 1
  fi
  [ -z "$lint" ] || { t_log "promtool check metrics: $lint"; return 1; }
  local kind this next ok=0
  for ca in "${cas[@]}"; do
    local kinds=(complete delta)
    [ "$ca" = "$root" ] && kinds=(complete)
    for kind in "${kinds[@]}"; do
      this=$(sample "$text" pkid_crl_this_update_timestamp_seconds "$ca" "$kind")
      next=$(sample "$text" pkid_crl_next_update_timestamp_seconds "$ca" "$kind")
      if [ -z "$this" ] || [ -z "$next" ]; then
        t_log "no pkid_crl_{this,next}_update_timestamp_seconds{ca=\"$ca\",kind=\"$kind\"}"
        ok=1
        continue
      fi
      if ! awk -v t="$this" -v n="$next" -v now="$(date +%s)" \
        'BEGIN { exit !(t + 0 > 1e9 && n + 0 > t + 0 && t + 0 <= now + 60) }'; then
        t_log "$ca $kind: thisUpdate $this, nextUpdate $next"
        ok=1
      fi
    done
    if [ "$ca" != "$root" ] &&
      ! grep -qE "^pkid_crl_builds_total\{ca=\"$ca\",result=\"ok\"\} [1-9]" <<<"$text"; then
      t_log "no successful build counted for $ca"
      ok=1
    fi
  done
  # Every pkid_* family the rules use is one pkid exports (histograms by
  # their _bucket series). The OCSP gauge appears after the first refresh
  # sweep that saw a stored response: pkid's first sweep is 200 ms in.
  local fam
  for fam in $(grep -ohE 'pkid_[a-z_]+' "$PROM_DIR"/pkid-rules.yml | sort -u); do
    grep -qE "^(# TYPE )?$fam(_bucket)?(\{| )" <<<"$text" || { t_log "the rules use $fam; pkid has no such series"; ok=1; }
  done
  # What the rules select exists, and only under the labels they use.
  if grep -E '^pkid_crl_(this|next)_update_timestamp_seconds\{' <<<"$text" |
    grep -vqE '^[a-z_]+\{ca="[^"]+",kind="(complete|delta)"\} '; then
    t_log "CRL timestamps under other labels:"
    grep -E '^pkid_crl_(this|next)_update' <<<"$text" >&2
    ok=1
  fi
  if grep -E '^pkid_crl_builds_total\{' <<<"$text" |
    grep -vqE '^[a-z_]+\{ca="[^"]+",result="(ok|failed)"\} '; then
    t_log "pkid_crl_builds_total under other labels"
    ok=1
  fi
  stop_pkid
  return $ok
}

t_run check_config test_check_config
t_run check_rules test_check_rules
t_run unit_tests test_unit_tests
t_run every_rule_tested test_every_rule_tested
t_run tests_can_fail test_tests_can_fail
t_run dashboard test_dashboard
t_run real_pkid_metrics test_real_pkid_metrics
t_finish
