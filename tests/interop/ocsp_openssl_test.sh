#!/usr/bin/env bash
# ocsp_openssl_test: lib/ocsp's requests and responses, judged by
# `openssl ocsp` and by Python cryptography's OCSP parser.
#
# A demo hierarchy is made with pkictl. `openssl ocsp -reqout` writes
# requests about its service certificates (SHA-1 CertIDs by default, SHA-256
# with -sha256, with and without nonces, several certificates at once);
# ocsp_tool parses each with pki_ocsp_request_parse and answers it signed by
# the issuing CA; `openssl ocsp -respin` must find the status for the
# certificate and say "Response verify OK" against the root and the chain.
# Malformed requests get the unsigned malformedRequest response, and a
# CertID naming another CA gets unauthorized.
# Usage: ocsp_openssl_test.sh PKICTL TESTLIB OCSP_TOOL
set -u
PKICTL=$(realpath "$1")
source "$2"
OCSP_TOOL=$(realpath "$3")
PY=/usr/bin/python3 # Debian's, which has python3-cryptography

PKI="$T_TMP/pki"
PASS="$T_TMP/ca-passphrase"
echo "demo-ca-passphrase" >"$PASS"
"$PKICTL" ceremony demo --out "$PKI" --passphrase-file "$PASS" >/dev/null || {
  echo "ceremony demo failed"; exit 1; }
ROOT="$PKI/root-ca/certs/root-ca.crt"
SVC="$PKI/service-certificates"
ca_cert() { echo "$PKI/intermediate-ca/$1/certs/$1.crt"; }
ca_chain() { echo "$PKI/intermediate-ca/$1/certs/$1-chain.crt"; }
VAULT="$SVC/infrastructure/vault/vault-server.crt"
REDIS="$SVC/infrastructure/redis/redis-client.crt"
AGENT="$SVC/agents/pki-agent/pki-agent-client.crt"
LB="$SVC/load-balancer/active/lb-current.crt"

# answer CA STATUS [REASON]: req.der -> resp.der through ocsp_tool.
answer() {
  local extra=()
  [ $# -ge 3 ] && extra=(--reason "$3")
  t_check "$OCSP_TOOL" --pki "$PKI" --ca "$1" --passphrase-file "$PASS" \
    --in req.der --out resp.der --status "$2" "${extra[@]}"
}

# check_openssl CA WANT CERT...: `openssl ocsp -respin` verifies resp.der
# against the root (with the CA's chain as untrusted certificates) and
# reports WANT for every CERT. Extra openssl options go in $OCSP_OPTS.
check_openssl() {
  local ca=$1 want=$2 out cert certs=()
  shift 2
  for cert in "$@"; do certs+=(-cert "$cert"); done
  # shellcheck disable=SC2086
  out=$(openssl ocsp -respin resp.der ${OCSP_OPTS:--no_nonce} -issuer "$(ca_cert "$ca")" \
    "${certs[@]}" -CAfile "$ROOT" -verify_other "$(ca_chain "$ca")" -resp_text 2>&1) || {
    t_log "openssl ocsp failed: $out"; return 1; }
  grep -q 'Response verify OK' <<<"$out" || { t_log "no verify OK: $out"; return 1; }
  for cert in "$@"; do
    grep -q "^$cert: $want\$" <<<"$out" || { t_log "$cert is not $want: $out"; return 1; }
  done
  printf '%s\n' "$out" >openssl.txt
}

# check_python CA STATUS HASH [REASON]: Python cryptography parses resp.der
# and finds the fields, the responder key hash and a valid CA signature.
check_python() {
  "$PY" - "$(ca_cert "$1")" "$2" "$3" "${4:-}" <<'EOF'
import sys, datetime
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ca = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
want_status, want_hash, want_reason = sys.argv[2], sys.argv[3], sys.argv[4]
req = ocsp.load_der_ocsp_request(open("req.der", "rb").read())
resp = ocsp.load_der_ocsp_response(open("resp.der", "rb").read())
def check(cond, what):
    if not cond:
        sys.exit("python: " + what)
check(resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, "status")
check(resp.certificate_status.name.lower() == want_status, "cert status %s" % resp.certificate_status)
check(resp.hash_algorithm.name == want_hash, "hash %s" % resp.hash_algorithm.name)
check(resp.serial_number == req.serial_number, "serial")
check(resp.issuer_key_hash == req.issuer_key_hash, "issuer key hash")
check(resp.issuer_name_hash == req.issuer_name_hash, "issuer name hash")
ski = x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest
check(resp.responder_key_hash == ski, "responder key hash is not the CA's key SHA-1")
check(resp.responder_name is None, "byName responder")
check(len(resp.certificates) == 0, "certs present")
check(resp.next_update > resp.this_update, "nextUpdate")
check(resp.produced_at == resp.this_update, "producedAt")
check(len(resp.extensions) == 0, "response extensions (a nonce?)")
if want_status == "revoked":
    check(resp.revocation_time is not None and resp.revocation_time < resp.this_update, "revocation time")
    if want_reason:
        check(resp.revocation_reason is not None and resp.revocation_reason.name == want_reason,
              "reason %s" % resp.revocation_reason)
    else:
        check(resp.revocation_reason is None, "a reason was not asked for")
key = ca.public_key()
if isinstance(key, ec.EllipticCurvePublicKey):
    key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
elif isinstance(key, ed25519.Ed25519PublicKey):
    key.verify(resp.signature, resp.tbs_response_bytes)
else:
    sys.exit("python: unexpected CA key type")
print("python ok:", resp.certificate_status, resp.hash_algorithm.name)
EOF
}

test_good_sha1() {
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  answer infrastructure-ca good || return 1
  check_openssl infrastructure-ca good "$VAULT" || return 1
  grep -q 'Hash Algorithm: sha1' openssl.txt || return 1
  check_python infrastructure-ca good sha1
}

test_revoked_with_reason() {
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  answer infrastructure-ca revoked 1 || return 1
  check_openssl infrastructure-ca revoked "$VAULT" || return 1
  grep -q 'Reason: keyCompromise' openssl.txt || { t_log "$(cat openssl.txt)"; return 1; }
  grep -q 'Revocation Time:' openssl.txt || return 1
  check_python infrastructure-ca revoked sha1 key_compromise
}

test_revoked_without_reason() {
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -cert "$REDIS" -reqout req.der -no_nonce || return 1
  answer infrastructure-ca revoked || return 1
  check_openssl infrastructure-ca revoked "$REDIS" || return 1
  ! grep -q 'Reason:' openssl.txt || return 1
  check_python infrastructure-ca revoked sha1
}

test_unknown() {
  t_check openssl ocsp -issuer "$(ca_cert agents-ca)" -cert "$AGENT" -reqout req.der -no_nonce || return 1
  answer agents-ca unknown || return 1
  check_openssl agents-ca unknown "$AGENT" || return 1
  check_python agents-ca unknown sha1
}

test_made_up_serial_unknown() {
  # A serial the CA never issued, by number: the response still verifies.
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -serial 0x01deadbeef \
    -reqout req.der -no_nonce || return 1
  answer infrastructure-ca unknown || return 1
  local out
  out=$(openssl ocsp -respin resp.der -issuer "$(ca_cert infrastructure-ca)" -serial 0x01deadbeef \
    -CAfile "$ROOT" -verify_other "$(ca_chain infrastructure-ca)" -no_nonce 2>&1) || {
    t_log "$out"; return 1; }
  grep -q 'Response verify OK' <<<"$out" && grep -q '^0x01deadbeef: unknown$' <<<"$out" || {
    t_log "$out"; return 1; }
  check_python infrastructure-ca unknown sha1
}

test_sha256_cert_id() {
  t_check openssl ocsp -sha256 -issuer "$(ca_cert infrastructure-ca)" -cert "$VAULT" \
    -reqout req.der -no_nonce || return 1
  answer infrastructure-ca good || return 1
  OCSP_OPTS="-no_nonce -sha256" check_openssl infrastructure-ca good "$VAULT" || return 1
  grep -q 'Hash Algorithm: sha256' openssl.txt || { t_log "$(cat openssl.txt)"; return 1; }
  check_python infrastructure-ca good sha256
}

test_sha256_revoked() {
  t_check openssl ocsp -sha256 -issuer "$(ca_cert agents-ca)" -cert "$AGENT" \
    -reqout req.der -no_nonce || return 1
  answer agents-ca revoked 4 || return 1
  OCSP_OPTS="-no_nonce -sha256" check_openssl agents-ca revoked "$AGENT" || return 1
  grep -q 'Reason: superseded' openssl.txt || return 1
  check_python agents-ca revoked sha256 superseded
}

test_second_level_intermediate() {
  # load-balancer-ca sits below infrastructure-ca: the chain has both.
  t_check openssl ocsp -issuer "$(ca_cert load-balancer-ca)" -cert "$LB" -reqout req.der -no_nonce || return 1
  answer load-balancer-ca good || return 1
  check_openssl load-balancer-ca good "$LB" || return 1
  check_python load-balancer-ca good sha1
}

test_request_with_nonce() {
  # openssl adds a nonce unless told not to: it is parsed and not echoed
  # (pre-produced responses carry none), so openssl warns and still verifies.
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -cert "$VAULT" -reqout req.der || return 1
  answer infrastructure-ca good || return 1
  local out
  out=$(openssl ocsp -respin resp.der -reqin req.der -issuer "$(ca_cert infrastructure-ca)" \
    -cert "$VAULT" -CAfile "$ROOT" -verify_other "$(ca_chain infrastructure-ca)" 2>&1) || {
    t_log "$out"; return 1; }
  grep -q 'Response verify OK' <<<"$out" && grep -q ': good$' <<<"$out" || { t_log "$out"; return 1; }
  grep -q 'WARNING: no nonce in response' <<<"$out" || { t_log "$out"; return 1; }
  check_python infrastructure-ca good sha1
}

test_several_certs_one_request() {
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -cert "$VAULT" -cert "$REDIS" \
    -reqout req.der -no_nonce || return 1
  answer infrastructure-ca good || return 1
  check_openssl infrastructure-ca good "$VAULT" "$REDIS"
}

# check_error STATUS_TEXT: resp.der is the unsigned error response openssl
# names STATUS_TEXT, and Python agrees.
check_error() {
  local out
  out=$(openssl ocsp -respin resp.der -resp_text -noverify 2>&1)
  grep -qiF "Responder Error: $1" <<<"$out" || { t_log "$out"; return 1; }
  "$PY" - "$2" <<'EOF'
import sys
from cryptography.x509 import ocsp
resp = ocsp.load_der_ocsp_response(open("resp.der", "rb").read())
if resp.response_status.name != sys.argv[1]:
    sys.exit("python: %s" % resp.response_status)
EOF
}

test_malformed_requests() {
  local out
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -cert "$VAULT" -reqout good.der -no_nonce || return 1
  # Garbage, a truncated request, trailing data, and BER (indefinite length).
  printf 'GET / HTTP/1.1\r\n\r\n' >bad1.der
  head -c 40 good.der >bad2.der
  { cat good.der; printf '\0'; } >bad3.der
  printf '\x30\x80\x30\x80\x30\x80\x00\x00\x00\x00\x00\x00' >bad4.der
  : >bad5.der
  for f in bad1.der bad2.der bad3.der bad4.der bad5.der; do
    cp "$f" req.der
    out=$("$OCSP_TOOL" --pki "$PKI" --ca infrastructure-ca --passphrase-file "$PASS" \
      --in req.der --out resp.der --status good) || return 1
    grep -q '^malformedRequest' <<<"$out" || { t_log "$f: $out"; return 1; }
    check_error 'malformedrequest (1)' MALFORMED_REQUEST || { t_log "$f"; return 1; }
    [ "$(od -An -tx1 resp.der | tr -d ' \n')" = 30030a0101 ] || return 1
  done
}

test_other_ca_unauthorized() {
  # A CertID for agents-ca put to infrastructure-ca: not ours to answer.
  t_check openssl ocsp -issuer "$(ca_cert agents-ca)" -cert "$AGENT" -reqout req.der -no_nonce || return 1
  local out
  out=$("$OCSP_TOOL" --pki "$PKI" --ca infrastructure-ca --passphrase-file "$PASS" \
    --in req.der --out resp.der --status good) || return 1
  grep -q '^unauthorized' <<<"$out" || { t_log "$out"; return 1; }
  check_error 'unauthorized (6)' UNAUTHORIZED
}

test_tampered_response_fails() {
  t_check openssl ocsp -issuer "$(ca_cert infrastructure-ca)" -cert "$VAULT" -reqout req.der -no_nonce || return 1
  answer infrastructure-ca good || return 1
  # Flip a bit of the serial inside the signed data; openssl must refuse it.
  "$PY" - <<'EOF' || return 1
d = bytearray(open("resp.der", "rb").read())
i = d.find(bytes([0x02, 0x13, 0x01]))
assert i > 0
d[i + 10] ^= 1
open("resp.der", "wb").write(bytes(d))
EOF
  local out
  if out=$(openssl ocsp -respin resp.der -issuer "$(ca_cert infrastructure-ca)" -serial 0x1 \
    -CAfile "$ROOT" -verify_other "$(ca_chain infrastructure-ca)" -no_nonce 2>&1) &&
    grep -q 'Response verify OK' <<<"$out"; then
    t_log "a tampered response verified: $out"
    return 1
  fi
  grep -q 'Response Verify Failure' <<<"$out" || { t_log "$out"; return 1; }
}

t_run good_sha1 test_good_sha1
t_run revoked_with_reason test_revoked_with_reason
t_run revoked_without_reason test_revoked_without_reason
t_run unknown test_unknown
t_run made_up_serial_unknown test_made_up_serial_unknown
t_run sha256_cert_id test_sha256_cert_id
t_run sha256_revoked test_sha256_revoked
t_run second_level_intermediate test_second_level_intermediate
t_run request_with_nonce test_request_with_nonce
t_run several_certs_one_request test_several_certs_one_request
t_run malformed_requests test_malformed_requests
t_run other_ca_unauthorized test_other_ca_unauthorized
t_run tampered_response_fails test_tampered_response_fails
t_finish
