#!/usr/bin/env bash
# bad_input_test: CSRs made by OpenSSL, good and bad, through
# `pkictl issue --offline --csr`, and malformed catalogues.
#
# Good CSRs of every accepted key type are signed; every bad one is refused
# with a clear error, and no file is written or changed.
# Usage: bad_input_test.sh PKICTL TESTLIB CATALOG
set -u
PKICTL=$(realpath "$1")
source "$2"
CATALOG=$(realpath "$3")

PKI="$T_TMP/pki"
PASS="$T_TMP/ca-passphrase"
echo "bad-input-passphrase" >"$PASS"
"$PKICTL" ceremony demo --out "$PKI" --passphrase-file "$PASS" >/dev/null || {
  echo "ceremony demo failed"; exit 1; }
VAULT="$PKI/service-certificates/infrastructure/vault"

fingerprint() { (cd "$PKI" && find . -type f -printf '%p %m\n' -exec sha256sum {} \; | sort); }

# refused WORDS CSRFILE: issuing from CSRFILE fails saying WORDS, and
# leaves the tree as it was.
refused() {
  local words=$1 csr=$2 before
  before=$(fingerprint)
  t_expect_fail "$words" "$PKICTL" issue --offline --out "$PKI" --service vault \
    --usage server --csr "$csr" --passphrase-file "$PASS" || return 1
  [ "$before" = "$(fingerprint)" ] || { t_log "a refused request changed files"; return 1; }
}

# csr KEYOPTS... makes r.csr (PEM) with a new key and vault's names.
csr() {
  openssl req -new -nodes -keyout k.pem -subj /CN=vault \
    -addext "subjectAltName=DNS:vault.cybersec-framework.local" "$@" -out r.csr 2>/dev/null
}

# accepted: issuing from r.csr works, and OpenSSL verifies the result.
accepted() {
  t_check "$PKICTL" issue --offline --out "$PKI" --service vault --usage server \
    --csr r.csr --passphrase-file "$PASS" || return 1
  t_check openssl verify -x509_strict -purpose sslserver \
    -CAfile "$PKI/trust-stores/infrastructure-ca-truststore.pem" "$VAULT/vault-server.crt" || return 1
  # The certificate holds the CSR's key: compare public keys.
  [ "$(openssl x509 -in "$VAULT/vault-server.crt" -noout -pubkey)" = \
    "$(openssl req -in "${CSR_PEM:-r.csr}" -noout -pubkey)" ] || { t_log "key differs"; return 1; }
}

test_accepts_p256() { csr -newkey ec -pkeyopt ec_paramgen_curve:P-256 && accepted; }
test_accepts_p384() { csr -newkey ec -pkeyopt ec_paramgen_curve:P-384 && accepted; }
test_accepts_ed25519() { csr -newkey ed25519 && accepted; }
test_accepts_rsa2048() { csr -newkey rsa:2048 && accepted; }
test_accepts_der_csr() {
  csr -newkey ec -pkeyopt ec_paramgen_curve:P-256 && openssl req -in r.csr -outform DER -out r.der &&
    mv r.csr r.pem && mv r.der r.csr && CSR_PEM=r.pem accepted
}
test_accepts_csr_without_names() {
  # No names asked for: the certificate gets all of the profile's.
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout k.pem \
    -subj /CN=whatever -out r.csr 2>/dev/null && accepted || return 1
  openssl x509 -in "$VAULT/vault-server.crt" -noout -ext subjectAltName |
    grep -q 'URI:spiffe://cybersec-framework.local/infrastructure/vault'
}

test_refuses_empty() { : >r.csr && refused 'CSR' r.csr; }
test_refuses_garbage() { head -c 300 /dev/urandom >r.csr && refused 'CSR' r.csr; }
test_refuses_garbage_pem() {
  printf -- '-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all!\n-----END CERTIFICATE REQUEST-----\n' >r.csr
  refused 'base64|CSR' r.csr
}
test_refuses_truncated() {
  csr -newkey ec -pkeyopt ec_paramgen_curve:P-256 || return 1
  openssl req -in r.csr -outform DER -out full.der || return 1
  local n len
  len=$(stat -c %s full.der)
  for n in 0 1 2 10 50 100 $((len / 2)) $((len - 1)); do
    head -c "$n" full.der >r.csr
    refused 'CSR' r.csr || { t_log "at $n bytes"; return 1; }
  done
}
test_refuses_wrong_signature() {
  csr -newkey ec -pkeyopt ec_paramgen_curve:P-256 || return 1
  openssl req -in r.csr -outform DER -out full.der || return 1
  # Flip one bit of the last signature byte: still DER, no longer valid.
  /usr/bin/python3 -c '
import sys
b = bytearray(open("full.der", "rb").read()); b[-1] ^= 1
open("r.csr", "wb").write(bytes(b))' || return 1
  refused 'proof of possession' r.csr
}
test_refuses_p521() { csr -newkey ec -pkeyopt ec_paramgen_curve:P-521 && refused 'unsupported|P-521' r.csr; }
test_refuses_rsa1024() { csr -newkey rsa:1024 && refused 'unsupported|1024' r.csr; }
test_refuses_ed448() { csr -newkey ed448 && refused 'unsupported' r.csr; }
test_refuses_name_outside_profile() {
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout k.pem -subj /CN=vault \
    -addext "subjectAltName=DNS:vault.cybersec-framework.local,DNS:evil.example.com" \
    -out r.csr 2>/dev/null || return 1
  refused "denied.*evil.example.com.*not in profile" r.csr
}
test_refuses_identity_of_another_service() {
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout k.pem -subj /CN=vault \
    -addext "subjectAltName=URI:spiffe://cybersec-framework.local/agents/iam-agent" \
    -out r.csr 2>/dev/null || return 1
  refused "denied.*iam-agent" r.csr
}
test_refuses_ip_not_granted() {
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout k.pem -subj /CN=vault \
    -addext "subjectAltName=IP:10.0.0.1" -out r.csr 2>/dev/null || return 1
  refused "denied.*10.0.0.1" r.csr
}

# catalogue CONTENT WORDS: loading a catalogue with CONTENT fails saying WORDS.
catalogue_refused() {
  printf '%s\n' "$1" >bad.yaml
  t_expect_fail "$2" "$PKICTL" ceremony demo --out "$T_DIR/out" --catalog bad.yaml \
    --passphrase-file "$PASS" || return 1
  [ ! -e "$T_DIR/out" ] || { t_log "a refused catalogue wrote files"; return 1; }
}
test_refuses_malformed_catalogue() {
  catalogue_refused 'trust_domain: [unclosed' 'bad.yaml:[0-9]+' || return 1
  catalogue_refused 'no_such_key: 1' 'bad.yaml:1:' || return 1
  # The real catalogue with vault pointing at a CA that does not exist.
  local broken
  broken=$(awk '/name: vault/ {v = 1} v && /ca: infrastructure-ca/ {sub(/infrastructure-ca/, "infra-ca"); v = 0} {print}' "$CATALOG")
  grep -q 'infra-ca$' <<<"$broken" || { t_log "could not break the catalogue"; return 1; }
  catalogue_refused "$broken" "bad.yaml:[0-9]+:.*infra-ca" || return 1
  # And with a service whose DNS name is not a name.
  broken=$(sed 's/vault.cybersec-framework.local/vault..cybersec-framework.local/' "$CATALOG")
  catalogue_refused "$broken" "bad.yaml:[0-9]+:"
}
test_refuses_missing_file() {
  t_expect_fail 'not-found|no such|No such' "$PKICTL" issue --offline --out "$PKI" \
    --service vault --usage server --csr does-not-exist.csr --passphrase-file "$PASS"
}
test_refuses_unknown_service() {
  t_expect_fail "no service 'nope'" "$PKICTL" issue --offline --out "$PKI" --service nope \
    --passphrase-file "$PASS"
}
test_usage_errors() {
  "$PKICTL" ceremony demo >/dev/null 2>&1
  [ $? -eq 2 ] || { t_log "missing --out is not a usage error"; return 1; }
  "$PKICTL" frobnicate >/dev/null 2>&1
  [ $? -eq 2 ]
}

t_run accepts_p256 test_accepts_p256
t_run accepts_p384 test_accepts_p384
t_run accepts_ed25519 test_accepts_ed25519
t_run accepts_rsa2048 test_accepts_rsa2048
t_run accepts_der_csr test_accepts_der_csr
t_run accepts_csr_without_names test_accepts_csr_without_names
t_run refuses_empty test_refuses_empty
t_run refuses_garbage test_refuses_garbage
t_run refuses_garbage_pem test_refuses_garbage_pem
t_run refuses_truncated test_refuses_truncated
t_run refuses_wrong_signature test_refuses_wrong_signature
t_run refuses_p521 test_refuses_p521
t_run refuses_rsa1024 test_refuses_rsa1024
t_run refuses_ed448 test_refuses_ed448
t_run refuses_name_outside_profile test_refuses_name_outside_profile
t_run refuses_identity_of_another_service test_refuses_identity_of_another_service
t_run refuses_ip_not_granted test_refuses_ip_not_granted
t_run refuses_malformed_catalogue test_refuses_malformed_catalogue
t_run refuses_missing_file test_refuses_missing_file
t_run refuses_unknown_service test_refuses_unknown_service
t_run usage_errors test_usage_errors
t_finish
