#!/usr/bin/env bash
# prometheus_rules_test: deploy/prometheus/pkid-rules.yml judged by
# Prometheus' own promtool (Debian's prometheus 2.42, /usr/bin/promtool):
#  - `promtool check rules`: the file loads, every expression parses;
#  - `promtool test rules` with prometheus_rules_test.yml: PkidCrlStale
#    fires for a CRL past half its validity (an online CA's after 5m, the
#    offline root's after 1h) and not for fresh ones or for a rebuild late
#    by a moment; PkidCrlBuildFailing fires on a failed build, and clears;
#  - a real pkid on a fresh demo tree: its /metrics (admin listener)
#    passes `promtool check metrics`, and carries the CRL families the
#    rules use for every CA of the catalogue: complete and delta for each
#    online intermediate, complete for the root (signed at the ceremony),
#    with nextUpdate after thisUpdate, and a successful build counted.
#    pkid's first CRLs (cRLNumber 1) have no delta, which needs a base: it
#    runs with --crl-delta-interval-s 1, so that the second build, with
#    deltas, comes a second later.
# Usage: prometheus_rules_test.sh PKICTL PKID TESTLIB RULES RULES_TEST CATALOG
set -u
PKICTL=$(realpath "$1")
PKID=$(realpath "$2")
source "$3"
RULES=$(realpath "$4")
RULES_TEST=$(realpath "$5")
CATALOG=$(realpath "$6")
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

test_check_rules() {
  t_check "$PROMTOOL" check rules "$RULES"
}

test_unit_tests() {
  # The test file names the rules by base name, beside it.
  cp "$RULES" pkid-rules.yml && cp "$RULES_TEST" rules_test.yml &&
    t_check "$PROMTOOL" test rules rules_test.yml
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
  "$PKID" --pki "$T_DIR/pki" --listen 127.0.0.1:0 --ocsp-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --crl-delta-interval-s 1 2>"$log" &
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

t_run check_rules test_check_rules
t_run unit_tests test_unit_tests
t_run real_pkid_metrics test_real_pkid_metrics
t_finish
