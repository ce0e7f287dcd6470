#!/usr/bin/env bash
# impersonation_test: pkictl and `pkictl agent` know pkid by its identity
# and its CA, not by a DNS name any certificate of the root may match.
#
# Three real pkids run on loopback, all from copies of one demo tree:
#   genuine  presents pki-ca's certificate, as deployed;
#   edge     presents the load balancer's (*.cybersec-framework.local,
#            which matches pkid's name): whoever holds the edge's key;
#   stray    presents a certificate with pkid's own identity and names, but
#            from load-balancer-ca instead of pkid's CA, infrastructure-ca.
# pkid presents whatever sits at pki-ca's paths, so each is a real pkid
# that would honour a bootstrap token: what stops the clients is their own
# check. The clients use the original tree's root and certificates.
# Usage: impersonation_test.sh PKICTL PKID TESTLIB CATALOG
set -u
PKICTL=$(realpath "$1")
PKID=$(realpath "$2")
source "$3"
CATALOG=$(realpath "$4")

PKI="$T_TMP/pki"
ROOT="$PKI/root-ca/certs/root-ca.crt"
SELF=service-certificates/infrastructure/pki-ca/pki-ca-server
STATE="$T_TMP/state"
mkdir -p "$STATE"

"$PKICTL" ceremony demo --out "$PKI" >/dev/null || { echo "ceremony demo failed"; exit 1; }
# Before the copies: every pkid reads this token key at start.
"$PKICTL" token create --out "$PKI" --service vault --ttl 1h >"$STATE/vault.token" || {
  echo "token create failed"; exit 1; }

# edge: the load balancer's certificate, key and chain at pki-ca's paths.
cp -a "$PKI" "$T_TMP/edge"
for ext in .crt .key -chain.crt; do
  cp "$PKI/service-certificates/load-balancer/active/lb-current$ext" "$T_TMP/edge/$SELF$ext"
done
# stray: pkid's identity from the wrong intermediate, signed offline with a
# catalogue that moves pki-ca under load-balancer-ca.
cp -a "$PKI" "$T_TMP/stray"
sed '/^  - name: pki-ca$/,/^    ca:/ s/^    ca: infrastructure-ca$/    ca: load-balancer-ca/' \
  "$CATALOG" >"$T_TMP/stray.yaml"
grep -q 'ca: load-balancer-ca' "$T_TMP/stray.yaml" || { echo "could not move pki-ca"; exit 1; }
"$PKICTL" issue --offline --out "$T_TMP/stray" --catalog "$T_TMP/stray.yaml" --service pki-ca \
  --usage server --passphrase-file "$PKI/ca-passphrase" >/dev/null ||
  { echo "stray certificate failed"; exit 1; }
openssl x509 -noout -issuer -in "$T_TMP/stray/$SELF.crt" | grep -q 'Load Balancer CA' ||
  { echo "stray certificate not from load-balancer-ca"; exit 1; }

# start NAME DIR: a pkid on DIR; sets NAME_PORT and NAME_ADMIN.
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; PIDS=(); }
trap stop_all EXIT
start() {
  local name=$1 dir=$2 log="$T_TMP/$1.log" port= admin=
  "$PKID" --pki "$dir" --listen 127.0.0.1:0 --ocsp-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 2>"$log" &
  PIDS+=($!)
  for _ in $(seq 1 600); do
    port=$(grep -oE '"listening","grpc":"127\.0\.0\.1:[0-9]+"' "$log" | grep -oE '[0-9]+"$' | tr -d '"')
    admin=$(grep -oE '"listening","admin":"127\.0\.0\.1:[0-9]+"' "$log" | grep -oE '[0-9]+"$' | tr -d '"')
    [ -n "$port" ] && [ -n "$admin" ] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ] || [ -z "$admin" ]; then echo "pkid $name did not start:"; cat "$log"; exit 1; fi
  printf -v "${name}_PORT" %s "$port"
  printf -v "${name}_ADMIN" %s "$admin"
}
start genuine "$PKI"
start edge "$T_TMP/edge"
start stray "$T_TMP/stray"

issued_total() { curl -s "http://127.0.0.1:$1/metrics" | grep '^pkid_issued_total ' | cut -d' ' -f2; }

# Not pkid: UNAUTHENTICATED, why, and no retry ("after N attempts").
NOT_PKID='^pkictl: UNAUTHENTICATED: the server at 127\.0\.0\.1:[0-9]+ is not pkid: '
no_retry() { ! grep -q 'attempts' "$1" || { t_log "retried: $(cat "$1")"; return 1; }; }

test_genuine_accepted() {
  # The same commands reach the real pkid: the checks pass it.
  t_check "$PKICTL" bundle --pki "$PKI" --as pki-agent --server "127.0.0.1:$genuine_PORT" \
    --out root.pem >/dev/null || return 1
  cmp root.pem "$ROOT" || return 1
  # Without the tree pkid's CA is checked by name (--root only).
  cat "$PKI/service-certificates/agents/pki-agent/pki-agent-client.crt" \
    "$PKI/service-certificates/agents/pki-agent/pki-agent-client-chain.crt" >agent-full.crt
  t_expect_fail 'NOT_FOUND' "$PKICTL" status --root "$ROOT" --cert agent-full.crt \
    --key "$PKI/service-certificates/agents/pki-agent/pki-agent-client.key" \
    --server "127.0.0.1:$genuine_PORT" --serial 01
}

test_edge_refused() {
  "$PKICTL" status --pki "$PKI" --as pki-agent --server "127.0.0.1:$edge_PORT" --serial 01 \
    2>err.txt >/dev/null && { t_log "status against the edge succeeded"; return 1; }
  cat err.txt
  grep -qE "${NOT_PKID}its certificate's identity is spiffe://cybersec-framework.local/infrastructure/load-balancer, not pkid's spiffe://cybersec-framework.local/infrastructure/pki-ca" \
    err.txt || return 1
  no_retry err.txt
}

test_edge_gets_no_token() {
  local before
  before=$(issued_total "$edge_ADMIN")
  "$PKICTL" bootstrap --root "$ROOT" --server "127.0.0.1:$edge_PORT" \
    --token "$(cat "$STATE/vault.token")" --service vault --usage server \
    --out-cert vault.crt --out-key vault.key 2>err.txt >/dev/null &&
    { t_log "bootstrap against the edge succeeded"; return 1; }
  cat err.txt
  grep -qE "${NOT_PKID}.*load-balancer" err.txt || return 1
  [ ! -e vault.crt ] && [ ! -e vault.key ] || { t_log "files written"; return 1; }
  # The edge is a real pkid that would have honoured the token: it never
  # got the request.
  [ "$(issued_total "$edge_ADMIN")" = "$before" ] || { t_log "the edge issued"; return 1; }
  # The token is still good at the real pkid.
  t_check "$PKICTL" bootstrap --root "$ROOT" --server "127.0.0.1:$genuine_PORT" \
    --token "$(cat "$STATE/vault.token")" --service vault --usage server \
    --out-cert vault.crt --out-key vault.key >/dev/null
}

test_edge_bundle_refused() {
  "$PKICTL" bundle --pki "$PKI" --as pki-agent --server "127.0.0.1:$edge_PORT" \
    --out root.pem 2>err.txt >/dev/null && { t_log "bundle from the edge succeeded"; return 1; }
  grep -qE "${NOT_PKID}" err.txt || { cat err.txt; return 1; }
  [ ! -e root.pem ]
}

test_stray_refused_by_key() {
  # With the tree, pkid's CA is known by its certificate: key identifier.
  "$PKICTL" status --pki "$PKI" --as pki-agent --server "127.0.0.1:$stray_PORT" --serial 01 \
    2>err.txt >/dev/null && { t_log "status against stray succeeded"; return 1; }
  cat err.txt
  grep -qE "${NOT_PKID}its certificate \(identity spiffe://cybersec-framework.local/infrastructure/pki-ca\) was issued by 'Cybersec Framework Load Balancer CA' \(key identifier [0-9a-f]{40}\), not by pkid's CA 'Cybersec Framework Infrastructure CA' \(key identifier [0-9a-f]{40}\)" \
    err.txt || return 1
  no_retry err.txt
}

test_stray_refused_by_name() {
  # Without the tree (a bootstrap host holds the root alone): by name.
  "$PKICTL" bootstrap --root "$ROOT" --server "127.0.0.1:$stray_PORT" \
    --token "$(cat "$STATE/vault.token")" --service vault --usage server \
    --out-cert v.crt --out-key v.key 2>err.txt >/dev/null &&
    { t_log "bootstrap against stray succeeded"; return 1; }
  cat err.txt
  grep -qE "${NOT_PKID}.*was issued by 'Cybersec Framework Load Balancer CA', not by pkid's CA 'Cybersec Framework Infrastructure CA'" \
    err.txt || return 1
  [ "$(issued_total "$stray_ADMIN")" = 0 ]
}

test_server_identity_option() {
  # pkid's identity is the one asked for: the genuine pkid is not vault.
  t_expect_fail "${NOT_PKID}its certificate's identity is spiffe://cybersec-framework.local/infrastructure/pki-ca, not pkid's spiffe://cybersec-framework.local/infrastructure/vault" \
    "$PKICTL" status --pki "$PKI" --as pki-agent --server "127.0.0.1:$genuine_PORT" \
    --serial 01 --server-identity spiffe://cybersec-framework.local/infrastructure/vault || return 1
  # --server-ca names the CA: agents-ca did not issue pkid's certificate.
  t_expect_fail "${NOT_PKID}.*not by pkid's CA 'Cybersec Framework Agents CA'" \
    "$PKICTL" status --pki "$PKI" --as pki-agent --server "127.0.0.1:$genuine_PORT" \
    --serial 01 --server-ca "$PKI/intermediate-ca/agents-ca/certs/agents-ca.crt"
}

# The agent: in the agent's catalogue redis renews 59 days before expiry,
# so its 30-day certificates (pkid's catalogue) are always due. A tree of
# its own.
AGENT_PKI="$T_TMP/agent-pki"
DUE="$T_TMP/due.yaml"
cp -a "$PKI" "$AGENT_PKI"
sed '/^    dir: infrastructure\/redis$/a\    validity: 60d\n    renew_before: 59d' "$CATALOG" >"$DUE"
grep -q 'renew_before: 59d' "$DUE" || { echo "could not make redis due"; exit 1; }
AGENT_CRT="$AGENT_PKI/service-certificates/infrastructure/redis/redis-client.crt"
serial_of() { openssl x509 -noout -serial -in "$1"; }

test_agent_refuses_edge() {
  local before
  before=$(serial_of "$AGENT_CRT")
  "$PKICTL" agent --pki "$AGENT_PKI" --catalog "$DUE" --as redis:client \
    --server "127.0.0.1:$edge_PORT" --once 2>agent.log
  local rc=$?
  cat agent.log
  [ $rc -eq 1 ] || { t_log "agent --once exit $rc, want 1"; return 1; }
  grep '"event":"renew_failed"' agent.log | grep '"level":"error"' | grep '"status":"UNAUTHENTICATED"' |
    grep '"server_refused":"true"' | grep -q 'is not pkid: its certificate.s identity is spiffe://cybersec-framework.local/infrastructure/load-balancer' ||
    return 1
  [ "$(serial_of "$AGENT_CRT")" = "$before" ] || { t_log "certificate replaced"; return 1; }
  # Nor the stray one, whose identity is right.
  "$PKICTL" agent --pki "$AGENT_PKI" --catalog "$DUE" --as redis:client \
    --server "127.0.0.1:$stray_PORT" --once 2>agent2.log && { t_log "stray accepted"; return 1; }
  grep -q '"server_refused":"true".*' agent2.log && grep -q 'not by pkid.s CA' agent2.log || {
    cat agent2.log; return 1; }
  # The same agent renews with the real pkid.
  t_check "$PKICTL" agent --pki "$AGENT_PKI" --catalog "$DUE" --as redis:client \
    --server "127.0.0.1:$genuine_PORT" --once 2>agent3.log || { cat agent3.log; return 1; }
  [ "$(serial_of "$AGENT_CRT")" != "$before" ] || { t_log "not renewed by pkid"; return 1; }
}

test_agent_backs_off_fully() {
  # The daemon retries an outage quickly (--min-backoff-ms) but a server
  # that is not pkid only at --max-backoff-ms.
  "$PKICTL" agent --pki "$AGENT_PKI" --catalog "$DUE" --as redis:client \
    --server "127.0.0.1:$edge_PORT" --check-interval-ms 50 --min-backoff-ms 50 \
    --max-backoff-ms 5000 2>daemon.log &
  local pid=$!
  sleep 2.5
  kill -TERM $pid
  wait $pid
  cat daemon.log
  local n
  n=$(grep -c '"event":"renew_failed"' daemon.log)
  [ "$n" -eq 1 ] || { t_log "$n attempts in 2.5 s, want 1"; return 1; }
  local wait_ms
  wait_ms=$(grep '"event":"renew_failed"' daemon.log | grep -oE '"retry_in_ms":"[0-9]+"' |
    grep -oE '[0-9]+')
  [ "$wait_ms" -ge 4000 ] || { t_log "retry in $wait_ms ms, want about 5000"; return 1; }
}

t_run genuine_accepted test_genuine_accepted
t_run edge_refused test_edge_refused
t_run edge_gets_no_token test_edge_gets_no_token
t_run edge_bundle_refused test_edge_bundle_refused
t_run stray_refused_by_key test_stray_refused_by_key
t_run stray_refused_by_name test_stray_refused_by_name
t_run server_identity_option test_server_identity_option
t_run agent_refuses_edge test_agent_refuses_edge
t_run agent_backs_off_fully test_agent_backs_off_fully
stop_all
t_finish
