#!/usr/bin/env bash
# pkictl_online_test: pkictl's online commands (bootstrap, issue, renew,
# revoke, status, bundle) against a real pkid on loopback, through
# libpkiclient; what they write is judged by OpenSSL.
# Usage: pkictl_online_test.sh PKICTL PKID TESTLIB
set -u
PKICTL=$(realpath "$1")
PKID=$(realpath "$2")
source "$3"

PKI="$T_TMP/pki"
LOG="$T_TMP/pkid.log"
ROOT="$PKI/root-ca/certs/root-ca.crt"
STATE="$T_TMP/state" # what one case leaves for the next
mkdir -p "$STATE"

"$PKICTL" ceremony demo --out "$PKI" >/dev/null || { echo "ceremony demo failed"; exit 1; }
# The token key must exist before pkid starts: pkid reads it then.
"$PKICTL" token create --out "$PKI" --service vault --ttl 1h >"$STATE/vault.token" || {
  echo "token create failed"; exit 1; }

PKID_PID=
stop_pkid() {
  if [ -n "$PKID_PID" ]; then
    kill "$PKID_PID" 2>/dev/null
    wait "$PKID_PID" 2>/dev/null
    PKID_PID=
  fi
}
trap stop_pkid EXIT

t_spawn "$PKID" --pki "$PKI" --listen 127.0.0.1:0 --ocsp-listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 2>"$LOG"
PKID_PID=${T_PIDS[-1]}
PORT=
for _ in $(seq 1 600); do
  PORT=$(grep -oE '"listening","grpc":"127\.0\.0\.1:[0-9]+"' "$LOG" 2>/dev/null |
    head -n1 | grep -oE '[0-9]+"$' | tr -d '"')
  [ -n "$PORT" ] && break
  kill -0 "$PKID_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "pkid did not start:"
  cat "$LOG"
  exit 1
fi

# pk CMD [options]: pkictl against this pkid.
pk() {
  local cmd=$1
  shift
  "$PKICTL" "$cmd" --server "127.0.0.1:$PORT" "$@"
}

# verify_leaf PURPOSE CERT CHAIN: OpenSSL accepts CERT against the root.
verify_leaf() {
  t_check openssl verify -x509_strict -purpose "$1" -CAfile "$ROOT" -untrusted "$3" "$2" \
    >/dev/null
}

serial_of() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//' | tr 'A-F' 'a-f'; }

test_bootstrap_with_token() {
  t_check pk bootstrap --root "$ROOT" --token "$(cat "$STATE/vault.token")" --service vault \
    --usage server --out-cert vault.crt --out-key vault.key --out-chain vault-chain.crt \
    >out.txt || return 1
  verify_leaf sslserver vault.crt vault-chain.crt || return 1
  [ "$(stat -c %a vault.key)" = 600 ] || { t_log "key mode $(stat -c %a vault.key)"; return 1; }
  openssl x509 -noout -ext subjectAltName -in vault.crt | grep -q 'vault.cybersec-framework.local' ||
    { t_log "no vault SAN"; return 1; }
  # The key written matches the certificate.
  [ "$(openssl x509 -noout -pubkey -in vault.crt)" = "$(openssl pkey -pubout -in vault.key)" ] ||
    { t_log "key does not match the certificate"; return 1; }
  grep -q "^serial: *$(serial_of vault.crt)$" out.txt || { t_log "serial not printed"; return 1; }
}

test_token_is_single_use() {
  t_expect_fail 'UNAUTHENTICATED' pk bootstrap --root "$ROOT" \
    --token "$(cat "$STATE/vault.token")" --service vault --usage server \
    --out-cert again.crt --out-key again.key || return 1
  [ ! -e again.crt ] && [ ! -e again.key ]
}

test_bootstrap_needs_token() {
  t_expect_fail 'INVALID_ARGUMENT: --token' pk bootstrap --root "$ROOT" --service vault \
    --usage server --out-cert x.crt --out-key x.key
}

test_issue_for_itself() {
  t_check pk issue --pki "$PKI" --as pki-agent --service pki-agent --usage server \
    --validity 2h --out-cert agent.crt --out-key agent.key --out-chain agent-chain.crt \
    >/dev/null || return 1
  verify_leaf sslserver agent.crt agent-chain.crt || return 1
  [ "$(stat -c %a agent.key)" = 600 ] || return 1
  local life
  life=$(( $(date -d "$(openssl x509 -noout -enddate -in agent.crt | cut -d= -f2)" +%s) -
           $(date -d "$(openssl x509 -noout -startdate -in agent.crt | cut -d= -f2)" +%s) ))
  # 2 h, plus the few minutes pkid back-dates notBefore for clock skew.
  [ "$life" -ge 7200 ] && [ "$life" -le 8100 ] ||
    { t_log "lifetime $life s, asked for 2h"; return 1; }
}

test_admin_issues_for_redis() {
  # Explicit files, a client certificate followed by its chain in one file.
  local dir="$PKI/service-certificates/agents/pki-agent"
  cat "$dir/pki-agent-client.crt" "$dir/pki-agent-client-chain.crt" >agent-full.crt
  t_check pk issue --root "$ROOT" --cert agent-full.crt --key "$dir/pki-agent-client.key" \
    --service redis --usage client --key-type ecdsa-p384 \
    --out-cert redis.crt --out-key redis.key >/dev/null || return 1
  # Without --out-chain the chain follows the certificate.
  [ "$(grep -c 'BEGIN CERTIFICATE' redis.crt)" -ge 2 ] || { t_log "no chain in redis.crt"; return 1; }
  verify_leaf sslclient redis.crt redis.crt || return 1
  openssl pkey -in redis.key -text -noout | grep -q 'P-384' || { t_log "not P-384"; return 1; }
  cp redis.crt redis.key "$STATE/"
}

test_non_admin_denied() {
  t_expect_fail 'PERMISSION_DENIED' pk issue --pki "$PKI" --as security-agent \
    --service redis --usage server --out-cert r.crt --out-key r.key || return 1
  [ ! -e r.crt ] && [ ! -e r.key ]
}

test_renew() {
  # Renew with the redis certificate just issued (its chain in the same file).
  t_check pk renew --root "$ROOT" --cert "$STATE/redis.crt" --key "$STATE/redis.key" \
    --out-cert new.crt --out-key new.key --out-chain new-chain.crt >/dev/null || return 1
  verify_leaf sslclient new.crt new-chain.crt || return 1
  [ "$(stat -c %a new.key)" = 600 ] || return 1
  [ "$(serial_of new.crt)" != "$(serial_of "$STATE/redis.crt")" ] || return 1
  [ "$(openssl pkey -pubout -in new.key)" != "$(openssl pkey -pubout -in "$STATE/redis.key")" ] ||
    { t_log "renewal kept the old key"; return 1; }
  openssl x509 -noout -subject -in new.crt | grep -q redis || { t_log "not redis"; return 1; }
  serial_of new.crt >"$STATE/renewed.serial"
}

test_status_revoke_status() {
  local serial
  serial=$(cat "$STATE/renewed.serial")
  t_check pk status --pki "$PKI" --as pki-agent --serial "$serial" >st1.txt || return 1
  cat st1.txt
  grep -q '^state: *GOOD$' st1.txt || return 1
  grep -q '^service: *redis$' st1.txt || return 1
  grep -q '^usage: *client$' st1.txt || return 1
  grep -q '^issuer: *infrastructure-ca$' st1.txt || return 1
  t_check pk revoke --pki "$PKI" --as pki-agent --serial "$serial" --reason key-compromise \
    >/dev/null || return 1
  t_check pk status --pki "$PKI" --as pki-agent --serial "$serial" >st2.txt || return 1
  cat st2.txt
  grep -q '^state: *REVOKED$' st2.txt || return 1
  grep -q '^reason: *key-compromise$' st2.txt
}

test_revoke_unknown_serial() {
  t_expect_fail 'NOT_FOUND' pk revoke --pki "$PKI" --as pki-agent --serial 0123456789abcdef0123
}

test_bad_reason_is_local() {
  t_expect_fail 'INVALID_ARGUMENT: --reason' pk revoke --pki "$PKI" --as pki-agent \
    --serial 01 --reason bored
}

test_bundle() {
  t_check pk bundle --pki "$PKI" --as pki-agent --ca agents-ca --out agents.pem >/dev/null ||
    return 1
  t_check cmp agents.pem "$PKI/trust-stores/agent-truststore.pem" || return 1
  t_check pk bundle --pki "$PKI" --as pki-agent --out root.pem >/dev/null || return 1
  t_check openssl x509 -noout -in root.pem || return 1
  [ "$(openssl x509 -noout -fingerprint -sha256 -in root.pem)" = \
    "$(openssl x509 -noout -fingerprint -sha256 -in "$ROOT")" ] || return 1
  t_expect_fail 'NOT_FOUND' pk bundle --pki "$PKI" --as pki-agent --ca no-such-ca --out x.pem
}

test_wrong_port_unavailable() {
  # A port nothing listens on: one the kernel just handed out and released.
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local start=$SECONDS
  t_expect_fail 'UNAVAILABLE: .*after [0-9]+ attempts' "$PKICTL" status --server "127.0.0.1:$port" --pki "$PKI" \
    --as pki-agent --serial 01 --timeout-ms 2000 || return 1
  t_log "gave up after $((SECONDS - start)) s"
}

test_usage_errors() {
  local rc
  "$PKICTL" issue --service vault --bogus >/dev/null 2>&1
  rc=$?
  [ $rc -eq 2 ] || { t_log "bad option exit $rc"; return 1; }
  t_expect_fail 'root FILE' "$PKICTL" status --serial 01 || return 1
  t_expect_fail 'client certificate' "$PKICTL" status --root "$ROOT" --serial 01
}

t_run bootstrap_with_token test_bootstrap_with_token
t_run token_is_single_use test_token_is_single_use
t_run bootstrap_needs_token test_bootstrap_needs_token
t_run issue_for_itself test_issue_for_itself
t_run admin_issues_for_redis test_admin_issues_for_redis
t_run non_admin_denied test_non_admin_denied
t_run renew test_renew
t_run status_revoke_status test_status_revoke_status
t_run revoke_unknown_serial test_revoke_unknown_serial
t_run bad_reason_is_local test_bad_reason_is_local
t_run bundle test_bundle
t_run wrong_port_unavailable test_wrong_port_unavailable
t_run usage_errors test_usage_errors
stop_pkid
t_finish
