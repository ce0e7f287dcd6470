#!/usr/bin/env bash
# crl_pkictl_test: pkictl's CRL commands, judged by OpenSSL.
#   ceremony crl   the root's next CRL, signed offline, revoking an
#                  intermediate: OpenSSL's -crl_check_all then refuses
#                  that intermediate's leaves; every refusal leaves the
#                  current file as it was.
#   crl inspect    pkid's CRLs and the root's, signatures checked.
#   crl fetch      from a real pkid (conditional on the ETag), and from a
#                  server that answers with the wrong CA's CRL, an older
#                  one, garbage or too much: each refused, FILE untouched.
# Usage: crl_pkictl_test.sh PKICTL PKID TESTLIB
set -u
PKICTL=$(realpath "$1")
PKID=$(realpath "$2")
source "$3"

PKI="$T_TMP/pki"
LOG="$T_TMP/pkid.log"
ROOT="$PKI/root-ca/certs/root-ca.crt"
SHARES="$PKI/root-ca/shares"
STATE="$T_TMP/state"
mkdir -p "$STATE"

"$PKICTL" ceremony demo --out "$PKI" >/dev/null || { echo "ceremony demo failed"; exit 1; }

PKID_PID=
HTTP_PID=
stop_all() {
  for p in $PKID_PID $HTTP_PID; do
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  PKID_PID=
  HTTP_PID=
}
trap stop_all EXIT

t_spawn "$PKID" --pki "$PKI" --listen 127.0.0.1:0 --ocsp-listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 2>"$LOG"
PKID_PID=${T_PIDS[-1]}
GRPC= OCSP=
for _ in $(seq 1 600); do
  GRPC=$(grep -oE '"listening","grpc":"127\.0\.0\.1:[0-9]+"' "$LOG" | head -n1 | grep -oE '[0-9]+"$' | tr -d '"')
  OCSP=$(grep -oE '"listening","ocsp":"127\.0\.0\.1:[0-9]+"' "$LOG" | head -n1 | grep -oE '[0-9]+"$' | tr -d '"')
  [ -n "$GRPC" ] && [ -n "$OCSP" ] && grep -q '"crl_published","ca":"agents-ca","number":"2"' "$LOG" && break
  kill -0 "$PKID_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$GRPC" ] || [ -z "$OCSP" ]; then
  echo "pkid did not start:"
  cat "$LOG"
  exit 1
fi
BASE="http://127.0.0.1:$OCSP/crl/"

# A hostile server: serves whatever files are in $T_TMP/www, on a port the
# kernel picks (written to $T_TMP/www.port).
mkdir -p "$T_TMP/www"
t_spawn /usr/bin/python3 -c '
import http.server, os, sys
os.chdir(sys.argv[1])
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[2], "w").write(str(s.server_address[1]))
s.serve_forever()' "$T_TMP/www" "$T_TMP/www.port"
HTTP_PID=${T_PIDS[-1]}
for _ in $(seq 1 100); do [ -s "$T_TMP/www.port" ] && break; sleep 0.05; done
HOSTILE="http://127.0.0.1:$(cat "$T_TMP/www.port")"

sha() { sha256sum "$1" | cut -d' ' -f1; }
chain_of() { cat "$PKI/intermediate-ca/$1/certs/$1.crt"; }

test_inspect_pkid_and_root_crls() {
  t_check "$PKICTL" crl inspect "$PKI/crl/agents-ca.crl" --pki "$PKI" >out.txt || return 1
  grep -q 'complete' out.txt && grep -q 'Signature: *verified' out.txt &&
    grep -q "Delta CRL: *${BASE}agents-ca-delta.crl\|Delta CRL: *http" out.txt ||
    { t_log "$(cat out.txt)"; return 1; }
  t_check "$PKICTL" crl inspect "$PKI/crl/agents-ca-delta.crl.pem" --pki "$PKI" >out.txt || return 1
  grep -q 'delta' out.txt && grep -q 'Signature: *verified' out.txt || { t_log "$(cat out.txt)"; return 1; }
  t_check "$PKICTL" crl inspect "$PKI/crl/root.crl" --pki "$PKI" >out.txt || return 1
  grep -q 'Root CA' out.txt && grep -q 'Number: *1$' out.txt || { t_log "$(cat out.txt)"; return 1; }
  # Against another CA's certificate the signature does not verify.
  ! "$PKICTL" crl inspect "$PKI/crl/agents-ca.crl" \
    --ca-file "$PKI/intermediate-ca/external-ca/certs/external-ca.crt" >out.txt 2>&1 ||
    ! grep -q 'Signature: *verified' out.txt || { t_log "verified under the wrong CA"; return 1; }
  t_expect_fail "no X509 CRL block" "$PKICTL" crl inspect "$PKI/root-ca/certs/root-ca.crt" || return 1
  # Plain `pkictl inspect` knows a CRL too, and says it checked nothing.
  t_check "$PKICTL" inspect "$PKI/crl/agents-ca.crl.pem" >out.txt || return 1
  grep -q 'Certificate revocation list, complete' out.txt && grep -q 'not checked' out.txt ||
    { t_log "$(cat out.txt)"; return 1; }
}

test_fetch_from_pkid() {
  t_check "$PKICTL" crl fetch --ca agents-ca --pki "$PKI" --base-url "$BASE" --out a.crl \
    >out.txt || return 1
  grep -q 'written' out.txt || { t_log "$(cat out.txt)"; return 1; }
  cmp -s a.crl <(curl -s "${BASE}agents-ca.crl") || { t_log "not the served CRL"; return 1; }
  [ -s a.crl.etag ] || { t_log "no etag kept"; return 1; }
  t_check "$PKICTL" crl fetch --ca agents-ca --pki "$PKI" --base-url "$BASE" --out a.crl \
    >out.txt || return 1
  grep -q 'not modified' out.txt || { t_log "not conditional: $(cat out.txt)"; return 1; }
  t_check "$PKICTL" crl fetch --ca agents-ca --delta --pki "$PKI" --base-url "$BASE" --out d.pem \
    --pem >/dev/null || return 1
  openssl crl -in d.pem -noout -text | grep -q 'Delta CRL Indicator' ||
    { t_log "the delta is not a delta"; return 1; }
  # A revocation makes a newer CRL, which the next fetch takes.
  t_check "$PKICTL" issue --pki "$PKI" --as pki-agent --server "127.0.0.1:$GRPC" \
    --service pki-agent --usage client --out-cert c.crt --out-key c.key >/dev/null || return 1
  local serial
  serial=$(openssl x509 -in c.crt -noout -serial | cut -d= -f2)
  t_check "$PKICTL" revoke --pki "$PKI" --as pki-agent --server "127.0.0.1:$GRPC" \
    --serial "$serial" --reason superseded >/dev/null || return 1
  for _ in $(seq 1 50); do
    "$PKICTL" crl fetch --ca agents-ca --pki "$PKI" --base-url "$BASE" --out a.crl >out.txt 2>&1
    grep -q 'written' out.txt && break
    sleep 0.1
  done
  openssl crl -inform DER -in a.crl -noout -text | grep -qi "$serial" ||
    { t_log "the revoked serial is not in the new CRL"; return 1; }
  cp a.crl "$STATE/agents-newer.crl"
  cp a.crl "$STATE/agents-held.crl"
}

# fetch_refused WORDS FILE_SERVED: the hostile server answers with
# FILE_SERVED; the fetch must fail with WORDS and leave a.crl as it was.
fetch_refused() {
  local words=$1 served=$2
  cp "$STATE/agents-held.crl" a.crl
  rm -f a.crl.etag # unconditional: the server's bytes are judged
  local before
  before=$(sha a.crl)
  cp "$served" "$T_TMP/www/agents-ca.crl"
  t_expect_fail "$words" "$PKICTL" crl fetch --ca agents-ca --pki "$PKI" \
    --base-url "$HOSTILE/" --out a.crl --max-size 64K || return 1
  [ "$(sha a.crl)" = "$before" ] || { t_log "a.crl changed"; return 1; }
}

test_fetch_refuses_what_is_not_good() {
  [ -s "$STATE/agents-held.crl" ] || { t_log "needs fetch_from_pkid"; return 1; }
  # Another CA's CRL at this CA's URL.
  fetch_refused "issuer is not the CA's subject" "$PKI/crl/external-ca.crl" || return 1
  # Garbage, and a CRL with one flipped octet in its signature.
  head -c 300 /dev/urandom >junk.bin
  fetch_refused 'malformed CRL' junk.bin || return 1
  cp "$STATE/agents-held.crl" flipped.crl
  local n
  n=$(stat -c %s flipped.crl)
  printf '\x00' | dd of=flipped.crl bs=1 seek=$((n - 5)) conv=notrunc 2>/dev/null
  fetch_refused 'signature does not verify' flipped.crl || return 1
  # More than --max-size.
  head -c 100000 /dev/zero >big.bin
  fetch_refused 'over the limit' big.bin || return 1
}

test_fetch_refuses_an_older_crl() {
  [ -s "$STATE/agents-held.crl" ] || { t_log "needs fetch_from_pkid"; return 1; }
  # The CRL pkid served before the revocation: a replay that would
  # un-revoke (RFC 5280 5.2.3's numbers only go up).
  local old_number held_number
  old_number=$(openssl crl -inform DER -in "$STATE/agents-old.crl" -noout -crlnumber | cut -d= -f2)
  held_number=$(openssl crl -inform DER -in "$STATE/agents-held.crl" -noout -crlnumber | cut -d= -f2)
  [ "$((16#${old_number#0x}))" -lt "$((16#${held_number#0x}))" ] ||
    { t_log "old $old_number not below $held_number"; return 1; }
  fetch_refused 'older than the one held' "$STATE/agents-old.crl" || return 1
  # A delta where the complete CRL was asked for.
  fetch_refused 'a delta CRL where the complete CRL was asked for' "$PKI/crl/agents-ca-delta.crl" || return 1
}

test_ceremony_crl_revokes_an_intermediate() {
  local before
  before=$(sha "$PKI/crl/root.crl")
  # Two shares of a 3-of-5 split open nothing, and write nothing.
  t_expect_fail "too few shares" "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-1.share" \
    --share "$SHARES/custodian-2.share" || return 1
  [ "$(sha "$PKI/crl/root.crl")" = "$before" ] || { t_log "root.crl changed"; return 1; }
  t_expect_fail "go together" "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-1.share" \
    --share "$SHARES/custodian-2.share" --share "$SHARES/custodian-4.share" \
    --revoke external-ca || return 1
  t_expect_fail "not 'certificate-hold'" "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-1.share" \
    --share "$SHARES/custodian-2.share" --share "$SHARES/custodian-4.share" \
    --revoke external-ca --reason certificate-hold || return 1
  [ "$(sha "$PKI/crl/root.crl")" = "$before" ] || { t_log "root.crl changed"; return 1; }

  # A leaf of agents-ca and one of infrastructure-ca, both good before.
  local agent="$PKI/service-certificates/agents/pki-agent/pki-agent-client.crt"
  local vault="$PKI/service-certificates/infrastructure/vault/vault-server.crt"
  [ -s "$vault" ] || vault=$(find "$PKI/service-certificates/infrastructure/vault" -name '*.crt' ! -name '*-chain.crt' | head -n1)
  "$PKICTL" crl fetch --ca agents-ca --pki "$PKI" --base-url "$BASE" --out agents.crl >/dev/null ||
    return 1
  "$PKICTL" crl fetch --ca infrastructure-ca --pki "$PKI" --base-url "$BASE" --out infra.crl \
    >/dev/null || return 1
  openssl crl -inform DER -in agents.crl -out agents.pem
  openssl crl -inform DER -in infra.crl -out infra.pem
  openssl crl -inform DER -in "$PKI/crl/root.crl" -out root.pem
  chain_of agents-ca >agents-chain.pem
  chain_of infrastructure-ca >infra-chain.pem
  t_check openssl verify -crl_check_all -CAfile "$ROOT" -untrusted agents-chain.pem \
    -CRLfile root.pem -CRLfile agents.pem "$agent" >/dev/null || return 1
  t_check openssl verify -crl_check_all -CAfile "$ROOT" -untrusted infra-chain.pem \
    -CRLfile root.pem -CRLfile infra.pem "$vault" >/dev/null || return 1

  t_check "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-1.share" \
    --share "$SHARES/custodian-3.share" --share "$SHARES/custodian-5.share" \
    --revoke agents-ca --reason ca-compromise >out.txt || return 1
  grep -q 'root CRL 2' out.txt || { t_log "$(cat out.txt)"; return 1; }
  [ "$(stat -c %a "$PKI/crl/root.crl")" = 644 ] || { t_log "mode $(stat -c %a "$PKI/crl/root.crl")"; return 1; }
  openssl crl -inform DER -in "$PKI/crl/root.crl" -out root2.pem
  cmp -s root2.pem "$PKI/crl/root.crl.pem" || { t_log "PEM and DER differ"; return 1; }
  openssl crl -in root2.pem -noout -text >root.txt
  grep -q 'CA Compromise' root.txt && grep -A1 'CRL Number' root.txt | grep -q '^ *2$' ||
    { t_log "$(cat root.txt)"; return 1; }
  # The revoked intermediate's leaf is refused; the other CA's is not.
  openssl verify -crl_check_all -CAfile "$ROOT" -untrusted agents-chain.pem \
    -CRLfile root2.pem -CRLfile agents.pem "$agent" >out.txt 2>&1 &&
    { t_log "accepted under a revoked CA"; return 1; }
  grep -q 'certificate revoked' out.txt || { t_log "$(cat out.txt)"; return 1; }
  t_check openssl verify -crl_check_all -CAfile "$ROOT" -untrusted infra-chain.pem \
    -CRLfile root2.pem -CRLfile infra.pem "$vault" >/dev/null || return 1
  # Listing it twice is refused; the file stays CRL 2.
  before=$(sha "$PKI/crl/root.crl")
  t_expect_fail "already on the root's CRL" "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-1.share" \
    --share "$SHARES/custodian-3.share" --share "$SHARES/custodian-5.share" \
    --revoke agents-ca --reason key-compromise || return 1
  [ "$(sha "$PKI/crl/root.crl")" = "$before" ] || { t_log "root.crl changed"; return 1; }
  # A renewal without a revocation: number 3, the entry carried over.
  t_check "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-2.share" \
    --share "$SHARES/custodian-3.share" --share "$SHARES/custodian-4.share" >/dev/null || return 1
  openssl crl -inform DER -in "$PKI/crl/root.crl" -noout -crlnumber | grep -q '=0x03$\|=03$' ||
    { t_log "$(openssl crl -inform DER -in "$PKI/crl/root.crl" -noout -crlnumber)"; return 1; }
  openssl crl -inform DER -in "$PKI/crl/root.crl" -noout -text | grep -q 'CA Compromise' ||
    { t_log "the entry was not carried over"; return 1; }
  # pkid serves the new one after SIGHUP.
  kill -HUP "$PKID_PID"
  for _ in $(seq 1 50); do
    curl -s "${BASE}root.crl" | cmp -s - "$PKI/crl/root.crl" && return 0
    sleep 0.1
  done
  t_log "pkid serves the old root CRL after SIGHUP"
  return 1
}

test_ceremony_crl_refuses_a_bad_current_file() {
  cp "$PKI/crl/root.crl" "$STATE/root.keep"
  # Another CA's CRL in root.crl's place.
  cp "$PKI/crl/agents-ca.crl" "$PKI/crl/root.crl"
  t_expect_fail "is not the root's complete CRL" "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-1.share" \
    --share "$SHARES/custodian-3.share" --share "$SHARES/custodian-5.share" || return 1
  cmp -s "$PKI/crl/root.crl" "$PKI/crl/agents-ca.crl" || { t_log "overwritten"; return 1; }
  # No file at all.
  rm -f "$PKI/crl/root.crl"
  t_expect_fail "is missing" "$PKICTL" ceremony crl --out "$PKI" --share "$SHARES/custodian-1.share" \
    --share "$SHARES/custodian-3.share" --share "$SHARES/custodian-5.share" || return 1
  cp "$STATE/root.keep" "$PKI/crl/root.crl"
}

# Keep the CRL pkid serves now: older than any made after the revocation.
curl -s "${BASE}agents-ca.crl" >"$STATE/agents-old.crl"

t_run inspect_pkid_and_root_crls test_inspect_pkid_and_root_crls
t_run fetch_from_pkid test_fetch_from_pkid
t_run fetch_refuses_what_is_not_good test_fetch_refuses_what_is_not_good
t_run fetch_refuses_an_older_crl test_fetch_refuses_an_older_crl
t_run ceremony_crl_revokes_an_intermediate test_ceremony_crl_revokes_an_intermediate
t_run ceremony_crl_refuses_a_bad_current_file test_ceremony_crl_refuses_a_bad_current_file
stop_all
t_finish
