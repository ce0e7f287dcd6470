#!/usr/bin/env bash
# agent_test: `pkictl agent` keeps a short-lived certificate renewed against
# a real pkid: serials change, files are swapped atomically (a parallel
# reader never sees a partial file or a mismatched key), the reload hook
# runs, the metrics file is written, and the agent rides out a pkid restart.
# Usage: agent_test.sh PKICTL PKID TESTLIB CATALOG
set -u
PKICTL=$(realpath "$1")
PKID=$(realpath "$2")
source "$3"
CATALOG=$(realpath "$4")

PKI="$T_TMP/pki"
LOG="$T_TMP/pkid.log"
WORK="$T_TMP/work"
SHORT="$T_TMP/short-catalog.yaml"
SVC="$PKI/service-certificates/infrastructure/redis"
CRT="$SVC/redis-client.crt"
KEY="$SVC/redis-client.key"
mkdir -p "$WORK"

"$PKICTL" ceremony demo --out "$PKI" >/dev/null || { echo "ceremony demo failed"; exit 1; }
# redis gets 24-second certificates renewed when 14 s are left (+-10% of the
# lifetime): renewals about 10 s apart, and 14 s of margin for the outage
# below, so a slow (sanitized, loaded) pkid restart never lets the
# certificate expire first.
sed '/^    dir: infrastructure\/redis$/a\    validity: 24s\n    renew_before: 14s' "$CATALOG" >"$SHORT"
grep -q 'renew_before: 14s' "$SHORT" || { echo "could not shorten redis"; exit 1; }
"$PKICTL" issue --offline --out "$PKI" --catalog "$SHORT" --service redis --usage client \
  --passphrase-file "$PKI/ca-passphrase" >/dev/null || { echo "issue --offline failed"; exit 1; }

# A fixed port: pkid comes back on the same address after its restart.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

PKID_PID= AGENT_PID= WATCH_PID=
stop_pid() { [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null; }
stop_all() {
  stop_pid "$WATCH_PID"; WATCH_PID=
  stop_pid "$AGENT_PID"; AGENT_PID=
  stop_pid "$PKID_PID"; PKID_PID=
}
trap stop_all EXIT

start_pkid() {
  "$PKID" --pki "$PKI" --catalog "$SHORT" --listen "127.0.0.1:$PORT" \
    --ocsp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2>>"$LOG" &
  PKID_PID=$!
  for _ in $(seq 1 300); do
    grep -q "\"listening\",\"grpc\":\"127.0.0.1:$PORT\"" "$LOG" 2>/dev/null && return 0
    kill -0 "$PKID_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "pkid did not start:"; cat "$LOG"; return 1
}

# count EVENT: lines of the agent's log with that event.
count() { grep -c "\"event\":\"$1\"" "$WORK/agent.log" 2>/dev/null || true; }
# at_least EVENT N: the agent logged EVENT at least N times.
at_least() { [ "$(count "$1")" -ge "$2" ]; }

# wait_for SECONDS CMD...: until CMD succeeds.
wait_for() {
  local end=$((SECONDS + $1))
  shift
  while [ $SECONDS -lt $end ]; do
    "$@" && return 0
    sleep 0.2
  done
  "$@"
}

# watcher: reads the pair the way agent.h tells readers to (stat, read,
# stat again; read again if either file changed) and records any partial
# file, mismatched pair or key mode other than 0600.
watcher() {
  local n=0
  while :; do
    local before after mode
    before=$(stat -c %i "$KEY" "$CRT" 2>/dev/null | tr '\n' ' ')
    cp "$CRT" "$WORK/w.crt" 2>/dev/null
    cp "$KEY" "$WORK/w.key" 2>/dev/null
    mode=$(stat -c %a "$KEY" 2>/dev/null)
    after=$(stat -c %i "$KEY" "$CRT" 2>/dev/null | tr '\n' ' ')
    [ "$mode" = 600 ] || echo "key mode $mode" >>"$WORK/watch.bad"
    if [ -n "$before" ] && [ "$before" = "$after" ]; then
      local pub_crt pub_key
      pub_crt=$(openssl x509 -noout -pubkey -in "$WORK/w.crt" 2>/dev/null) ||
        echo "partial certificate" >>"$WORK/watch.bad"
      pub_key=$(openssl pkey -pubout -in "$WORK/w.key" 2>/dev/null) ||
        echo "partial key" >>"$WORK/watch.bad"
      [ "$pub_crt" = "$pub_key" ] || echo "mismatched pair" >>"$WORK/watch.bad"
      n=$((n + 1))
      # Renamed into place: a reader never sees the file half-written.
      echo "$n" >"$WORK/watch.count.tmp" && mv "$WORK/watch.count.tmp" "$WORK/watch.count"
    fi
  done
}

serial_of() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//'; }

start_pkid || exit 1
serial0=$(serial_of "$CRT")
watcher &
WATCH_PID=$!
"$PKICTL" agent --pki "$PKI" --catalog "$SHORT" --as redis:client --server "127.0.0.1:$PORT" \
  --check-interval-ms 200 --min-backoff-ms 200 --max-backoff-ms 1500 --timeout-ms 2000 \
  --metrics-file "$WORK/agent.prom" --metrics-listen 127.0.0.1:0 \
  --reload-command "touch '$WORK/hook-ran'" \
  2>"$WORK/agent.log" &
AGENT_PID=$!

test_renews_twice() {
  wait_for 45 at_least renewed 2 || { t_log "renewals: $(count renewed)"; return 1; }
  local s
  s=$(serial_of "$CRT")
  [ "$s" != "$serial0" ] || { t_log "serial unchanged"; return 1; }
  [ "$(grep '"event":"renewed"' "$WORK/agent.log" | grep -o '"serial":"[0-9a-f]*"' |
    sort -u | wc -l)" -ge 2 ] || { t_log "the two renewals share a serial"; return 1; }
  openssl verify -purpose sslclient -CAfile "$PKI/root-ca/certs/root-ca.crt" \
    -untrusted "$SVC/redis-client-chain.crt" "$CRT" >/dev/null || return 1
  [ "$(stat -c %a "$KEY")" = 600 ] || { t_log "key mode $(stat -c %a "$KEY")"; return 1; }
  [ "$(stat -c %a "$CRT")" = 644 ] || { t_log "cert mode $(stat -c %a "$CRT")"; return 1; }
}

test_atomic_files() {
  [ ! -e "$WORK/watch.bad" ] || { t_log "watcher: $(sort "$WORK/watch.bad" | uniq -c)"; return 1; }
  local n
  n=$(cat "$WORK/watch.count" 2>/dev/null || echo 0)
  t_log "watcher checked $n pairs"
  [ "$n" -ge 10 ] || { t_log "the watcher barely ran"; return 1; }
  ! ls "$SVC" | grep -q 'agent-new' || { t_log "temporary files left"; return 1; }
}

test_hook_ran() {
  [ -e "$WORK/hook-ran" ] || return 1
  grep -q '"event":"reload".*"exit_status":"0"' "$WORK/agent.log"
}

test_metrics() {
  cat "$WORK/agent.prom"
  local na
  na=$(date -d "$(openssl x509 -noout -enddate -in "$CRT" | cut -d= -f2)" +%s)
  # The file may lag the certificate by a check interval.
  wait_for 3 grep -q "^cert_expiry_timestamp{cert_name=\"redis-client.crt\"} $na\$" \
    "$WORK/agent.prom" || return 1
  grep -qE '^pkid_agent_renewals_total\{cert_name="redis-client.crt",result="ok"\} [2-9]' \
    "$WORK/agent.prom" || return 1
  grep -q '^# TYPE pkid_agent_renewals_total counter$' "$WORK/agent.prom" || return 1
  # --metrics-listen serves the same page over HTTP. A renewal may land
  # between the two reads: compare until they agree, a few times at most.
  local port
  port=$(grep -o '"event":"agent_start".*"metrics_port":"[0-9]*"' "$WORK/agent.log" |
    grep -o '"metrics_port":"[0-9]*"' | grep -o '[0-9]*')
  [ -n "$port" ] || { t_log "no metrics_port in agent_start"; return 1; }
  local i
  for i in 1 2 3 4 5; do
    curl -sf "http://127.0.0.1:$port/metrics" >"$T_DIR/scraped" || return 1
    cmp -s "$T_DIR/scraped" "$WORK/agent.prom" && break
    sleep 0.2
  done
  t_check cmp "$T_DIR/scraped" "$WORK/agent.prom" || return 1
  curl -sf -D "$T_DIR/headers" -o /dev/null "http://127.0.0.1:$port/metrics" || return 1
  grep -qi '^content-type: text/plain; version=0.0.4' "$T_DIR/headers" || return 1
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" = 404 ] || return 1
  promtool check metrics <"$T_DIR/scraped"
}

# The restart itself runs here, in the test's shell (cases run in
# subshells, and pkid must stay this shell's child); the cases judge it.
restart_pkid() {
  stop_pid "$PKID_PID"; PKID_PID=
  echo "$(count renewed)" >"$WORK/renewed.before"
  # The next renewal comes due while pkid is down: the agent retries.
  wait_for 30 at_least renew_failed $(($(count renew_failed) + 3))
  echo "$(count renewed)" >"$WORK/renewed.down"
  start_pkid
  wait_for 20 at_least renewed $(($(cat "$WORK/renewed.before") + 1))
}

test_rides_out_restart() {
  local before
  before=$(cat "$WORK/renewed.before")
  grep '"event":"renew_failed"' "$WORK/agent.log" | tail -n 3
  at_least renew_failed 3 || { t_log "no retries while pkid was down"; return 1; }
  grep '"event":"renew_failed"' "$WORK/agent.log" | tail -n 1 | grep -q '"status":"UNAVAILABLE"' ||
    { t_log "not UNAVAILABLE"; return 1; }
  [ "$(cat "$WORK/renewed.down")" -eq "$before" ] || { t_log "renewed without pkid?"; return 1; }
  at_least renewed $((before + 1)) || { t_log "no renewal after pkid came back"; return 1; }
  grep '"event":"renewed"' "$WORK/agent.log" | tail -n 1
  kill -0 "$AGENT_PID"
}

stop_agent() {
  kill -TERM "$AGENT_PID"
  wait "$AGENT_PID"
  echo $? >"$WORK/agent.rc"
  AGENT_PID=
}

test_stops_on_sigterm() {
  [ "$(cat "$WORK/agent.rc")" = 0 ] || { t_log "exit $(cat "$WORK/agent.rc")"; return 1; }
  grep -q '"event":"agent_stop"' "$WORK/agent.log"
}

test_once_and_usage() {
  # Nothing is due right after a renewal: --once exits 0 without renewing.
  local before
  before=$(serial_of "$CRT")
  t_check "$PKICTL" agent --pki "$PKI" --catalog "$SHORT" --as redis:client \
    --server "127.0.0.1:$PORT" --once 2>once.log || return 1
  [ "$(serial_of "$CRT")" = "$before" ] || { t_log "--once renewed early"; return 1; }
  t_expect_fail 'metrics-listen.*localhost:9100' "$PKICTL" agent --pki "$PKI" --as redis \
    --metrics-listen localhost:9100 || return 1
  t_expect_fail 'go together' "$PKICTL" agent --pki "$PKI" --as redis --reload-signal HUP
}

t_run renews_twice test_renews_twice
t_run atomic_files test_atomic_files
t_run hook_ran test_hook_ran
t_run metrics test_metrics
restart_pkid
t_run rides_out_restart test_rides_out_restart
stop_agent
t_run stops_on_sigterm test_stops_on_sigterm
t_run once_and_usage test_once_and_usage
stop_all
[ -n "${TEST_UNDECLARED_OUTPUTS_DIR:-}" ] && cp "$WORK/agent.log" "$TEST_UNDECLARED_OUTPUTS_DIR/" 2>/dev/null
t_finish
