#!/usr/bin/env bash
# ocsp_http_test: the OCSP responder (server/ocsp_http.c) over HTTP/1.1 on
# loopback, judged by `openssl ocsp -url` (POST) and curl (GET).
#
# ocsp_server_tool serves a real status index holding service certificates
# of a demo hierarchy, with SHA-1 responses pre-signed. Checked: good over
# POST (SHA-1 from memory, SHA-256 signed on first use), GET with the
# url-encoded and the raw base64 path, RFC 5019 cache headers consistent
# with the response's own thisUpdate and nextUpdate, a stable ETag, unknown
# for a made-up serial, malformedRequest for garbage, unauthorized for a CA
# we do not serve, 415 for a POST of the wrong type, several certificates
# in one request, revoked after the tool revokes everything (SIGUSR1), and
# a responder URL with a path (/ocsp/).
# Usage: ocsp_http_test.sh PKICTL TESTLIB OCSP_SERVER_TOOL
set -u
PKICTL=$(realpath "$1")
source "$2"
TOOL=$(realpath "$3")

PKI="$T_TMP/pki"
"$PKICTL" ceremony demo --out "$PKI" >/dev/null || { echo "ceremony demo failed"; exit 1; }
ROOT="$PKI/root-ca/certs/root-ca.crt"
SVC="$PKI/service-certificates"
ca_cert() { echo "$PKI/intermediate-ca/$1/certs/$1.crt"; }
ca_chain() { echo "$PKI/intermediate-ca/$1/certs/$1-chain.crt"; }
VAULT="$SVC/infrastructure/vault/vault-server.crt"
REDIS="$SVC/infrastructure/redis/redis-client.crt"
AGENT="$SVC/agents/pki-agent/pki-agent-client.crt"
LB="$SVC/load-balancer/active/lb-current.crt"
INFRA=$(ca_cert infrastructure-ca)

# spawn_tool OUTFILE [ARGS...]: starts ocsp_server_tool (pid in $SPAWNED);
# wait_port OUTFILE: waits for the port it prints (into $PORT_READ).
spawn_tool() {
  local out=$1
  shift
  "$TOOL" --pki "$PKI" --cert "infrastructure-ca:$VAULT" --cert "infrastructure-ca:$REDIS" \
    --cert "agents-ca:$AGENT" --cert "load-balancer-ca:$LB" "$@" >"$out" 2>"$out.log" &
  SPAWNED=$!
}
wait_port() {
  local i
  for i in $(seq 1 200); do
    [ -s "$1" ] && { PORT_READ=$(head -n1 "$1"); return 0; }
    sleep 0.05
  done
  cat "$1.log" >&2
  return 1
}
spawn_tool "$T_TMP/tool1.out"
TOOL_PID=$SPAWNED
T_PIDS+=("$TOOL_PID")
wait_port "$T_TMP/tool1.out" || { echo "ocsp_server_tool did not start"; t_finish; exit 1; }
PORT=$PORT_READ
grep -q "\"event\":\"listening\",\"ocsp\":\"127.0.0.1:$PORT\"" "$T_TMP/tool1.out.log" || {
  echo "no listening line"; cat "$T_TMP/tool1.out.log"; t_finish; exit 1; }
URL="http://127.0.0.1:$PORT/"

# ask CA WANT CERT... (extra openssl options in $OCSP_OPTS): POST through
# `openssl ocsp -url`, which must verify the response against the root.
ask() {
  local ca=$1 want=$2 out cert certs=()
  shift 2
  for cert in "$@"; do certs+=(-cert "$cert"); done
  # shellcheck disable=SC2086
  out=$(openssl ocsp -url "$URL" ${OCSP_OPTS:--no_nonce} -issuer "$(ca_cert "$ca")" "${certs[@]}" \
    -CAfile "$ROOT" -verify_other "$(ca_chain "$ca")" -resp_text 2>&1) || {
    t_log "openssl ocsp failed: $out"; return 1; }
  grep -q 'Response verify OK' <<<"$out" || { t_log "no verify OK: $out"; return 1; }
  for cert in "$@"; do
    grep -q "^$cert: $want\$" <<<"$out" || { t_log "$cert is not $want: $out"; return 1; }
  done
  printf '%s\n' "$out" >openssl.txt
}

# b64url FILE: the url-encoded base64 of FILE, as RFC 6960 A.1 asks.
b64url() { base64 -w0 "$1" | sed -e 's/+/%2B/g' -e 's#/#%2F#g' -e 's/=/%3D/g'; }

# get PATH: GET through curl; headers in h.txt, body in resp.der.
get() {
  local code
  code=$(curl -s -o resp.der -D h.txt -w '%{http_code}' "http://127.0.0.1:$PORT$1") || return 1
  [ "$code" = 200 ] || { t_log "HTTP $code"; return 1; }
}

header() { grep -i "^$1:" h.txt | head -n1 | cut -d' ' -f2- | tr -d '\r'; }

test_post_good_sha1() {
  ask infrastructure-ca good "$VAULT" || return 1
  grep -q 'Hash Algorithm: sha1' openssl.txt
}

test_post_good_sha256() {
  # Not pre-signed: signed on first use, then served from memory.
  OCSP_OPTS="-no_nonce -sha256" ask agents-ca good "$AGENT" || return 1
  grep -q 'Hash Algorithm: sha256' openssl.txt || return 1
  OCSP_OPTS="-no_nonce -sha256" ask agents-ca good "$AGENT"
}

test_second_level_ca() {
  ask load-balancer-ca good "$LB"
}

test_request_with_nonce() {
  # openssl adds a nonce; pre-produced responses carry none (RFC 5019).
  local out
  out=$(openssl ocsp -url "$URL" -issuer "$INFRA" -cert "$VAULT" -CAfile "$ROOT" \
    -verify_other "$(ca_chain infrastructure-ca)" 2>&1)
  grep -q 'Response verify OK' <<<"$out" && grep -q ': good$' <<<"$out" || { t_log "$out"; return 1; }
}

test_get_and_cache_headers() {
  t_check openssl ocsp -issuer "$INFRA" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  get "/$(b64url req.der)" || return 1
  [ "$(header Content-Type)" = application/ocsp-response ] || { t_log "$(cat h.txt)"; return 1; }
  local text this next now max_age
  text=$(openssl ocsp -respin resp.der -issuer "$INFRA" -cert "$VAULT" -CAfile "$ROOT" \
    -verify_other "$(ca_chain infrastructure-ca)" -no_nonce -resp_text 2>&1)
  grep -q "^$VAULT: good\$" <<<"$text" || { t_log "$text"; return 1; }
  this=$(date -d "$(sed -n 's/^ *This Update: //p' <<<"$text")" +%s)
  next=$(date -d "$(sed -n 's/^ *Next Update: //p' <<<"$text")" +%s)
  now=$(date +%s)
  [ "$(date -d "$(header Last-Modified)" +%s)" = "$this" ] || { t_log "Last-Modified $(header Last-Modified) vs $this"; return 1; }
  [ "$(date -d "$(header Expires)" +%s)" = "$next" ] || { t_log "Expires $(header Expires) vs $next"; return 1; }
  max_age=$(header Cache-Control | sed -n 's/^max-age=\([0-9]*\), public, no-transform, must-revalidate$/\1/p')
  [ -n "$max_age" ] || { t_log "Cache-Control: $(header Cache-Control)"; return 1; }
  [ $((next - now - max_age)) -ge -2 ] && [ $((next - now - max_age)) -le 2 ] || {
    t_log "max-age $max_age, nextUpdate - now $((next - now))"; return 1; }
  [ $((next - this)) = 86400 ] || { t_log "validity $((next - this))"; return 1; }
  local etag
  etag=$(header ETag)
  [[ "$etag" =~ ^\"[0-9a-f]{32}\"$ ]] || { t_log "ETag $etag"; return 1; }
  # The same stored response: the same bytes and ETag, also by the raw
  # (not url-encoded) base64 path.
  cp resp.der first.der
  get "/$(base64 -w0 req.der)" || return 1
  [ "$(header ETag)" = "$etag" ] || { t_log "ETag changed: $(header ETag)"; return 1; }
  cmp -s resp.der first.der || { t_log "response changed"; return 1; }
  echo "$etag" >"$T_TMP/etag_before_revoke"
}

test_unknown_serial() {
  local out
  out=$(openssl ocsp -url "$URL" -issuer "$INFRA" -serial 0x01deadbeef -CAfile "$ROOT" \
    -verify_other "$(ca_chain infrastructure-ca)" -no_nonce 2>&1)
  grep -q 'Response verify OK' <<<"$out" && grep -q '^0x01deadbeef: unknown$' <<<"$out" || {
    t_log "$out"; return 1; }
}

test_malformed() {
  local code
  code=$(curl -s -o resp.der -w '%{http_code}' -H 'Content-Type: application/ocsp-request' \
    --data-binary 'not an ocsp request' "$URL") || return 1
  [ "$code" = 200 ] || { t_log "HTTP $code"; return 1; }
  [ "$(od -An -tx1 resp.der | tr -d ' \n')" = 30030a0101 ] || return 1
  # A GET whose path is not base64, and one that is base64 of garbage.
  get "/!!!!" || return 1
  [ "$(od -An -tx1 resp.der | tr -d ' \n')" = 30030a0101 ] || return 1
  get "/$(printf 'garbage' | base64 -w0)" || return 1
  [ "$(od -An -tx1 resp.der | tr -d ' \n')" = 30030a0101 ]
}

test_unauthorized() {
  # The root is not served here (it is offline): a CertID naming it.
  local out
  out=$(openssl ocsp -url "$URL" -issuer "$ROOT" -cert "$INFRA" -no_nonce -resp_text -noverify 2>&1)
  grep -qi 'Responder Error: unauthorized (6)' <<<"$out" || { t_log "$out"; return 1; }
}

test_wrong_content_type() {
  t_check openssl ocsp -issuer "$INFRA" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' \
    --data-binary @req.der "$URL") || return 1
  [ "$code" = 415 ] || { t_log "HTTP $code"; return 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL") || return 1
  [ "$code" = 405 ] || { t_log "HTTP $code"; return 1; }
}

test_several_certs() {
  ask infrastructure-ca good "$VAULT" "$REDIS"
}

test_keep_alive() {
  # curl reuses one connection for several URLs.
  t_check openssl ocsp -issuer "$INFRA" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  local p n
  p="http://127.0.0.1:$PORT/$(b64url req.der)"
  n=$(curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' "$p" "$p" "$p" | awk '{ n += $1 } END { print n }')
  [ "$n" = 1 ] || { t_log "connections: $n"; return 1; }
}

test_revoked_after_revocation() {
  kill -USR1 "$TOOL_PID" || return 1
  local i
  for i in $(seq 1 100); do
    grep -q '"event":"revoked_all"' "$T_TMP/tool1.out.log" && break
    sleep 0.05
  done
  ask infrastructure-ca revoked "$VAULT" || return 1
  grep -q 'Reason: keyCompromise' openssl.txt || return 1
  OCSP_OPTS="-no_nonce -sha256" ask agents-ca revoked "$AGENT" || return 1
  ask load-balancer-ca revoked "$LB" || return 1
  # A new response: a new ETag.
  t_check openssl ocsp -issuer "$INFRA" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  get "/$(b64url req.der)" || return 1
  [ "$(header ETag)" != "$(cat "$T_TMP/etag_before_revoke")" ] || { t_log "same ETag"; return 1; }
}

check_url_with_path() {
  local port2=$1 out code
  out=$(openssl ocsp -url "http://127.0.0.1:$port2/ocsp/" -issuer "$INFRA" -cert "$VAULT" \
    -CAfile "$ROOT" -verify_other "$(ca_chain infrastructure-ca)" -no_nonce 2>&1)
  grep -q "^$VAULT: good\$" <<<"$out" || { t_log "$out"; return 1; }
  t_check openssl ocsp -issuer "$INFRA" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  PORT=$port2 get "/ocsp/$(b64url req.der)" || return 1
  openssl ocsp -respin resp.der -issuer "$INFRA" -cert "$VAULT" -noverify -no_nonce 2>&1 |
    grep -q "^$VAULT: good\$" || return 1
  # Outside the path: 404.
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port2/other/$(b64url req.der)")
  [ "$code" = 404 ] || { t_log "HTTP $code"; return 1; }
}

test_url_with_path() {
  # A second responder whose URL has a path; this case stops it itself.
  spawn_tool tool2.out --listen "127.0.0.1:0/ocsp/"
  local pid=$SPAWNED rc=1
  if wait_port tool2.out; then
    check_url_with_path "$PORT_READ"
    rc=$?
  fi
  kill -TERM "$pid"
  wait "$pid"
  return $rc
}

# running PID: alive and not a zombie waiting for the test shell to reap it.
running() { [ -e "/proc/$1/stat" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat")" != Z ]; }

test_graceful_stop() {
  # An idle keep-alive connection does not hold the stop up.
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
  kill -TERM "$TOOL_PID" || return 1
  local i
  for i in $(seq 1 100); do
    running "$TOOL_PID" || break
    sleep 0.05
  done
  exec 3<&-
  ! running "$TOOL_PID" || { t_log "still running"; return 1; }
}

t_run post_good_sha1 test_post_good_sha1
t_run post_good_sha256 test_post_good_sha256
t_run second_level_ca test_second_level_ca
t_run request_with_nonce test_request_with_nonce
t_run get_and_cache_headers test_get_and_cache_headers
t_run unknown_serial test_unknown_serial
t_run malformed test_malformed
t_run unauthorized test_unauthorized
t_run wrong_content_type test_wrong_content_type
t_run several_certs test_several_certs
t_run keep_alive test_keep_alive
t_run revoked_after_revocation test_revoked_after_revocation
t_run url_with_path test_url_with_path
t_run graceful_stop test_graceful_stop
t_finish
