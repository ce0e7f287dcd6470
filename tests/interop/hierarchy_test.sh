#!/usr/bin/env bash
# hierarchy_test: the demo ceremony's output, judged by OpenSSL.
#
# Every certificate `pkictl ceremony demo` writes must pass
# `openssl verify -x509_strict` with the right purpose against its trust
# store, two of them must complete a mutual-TLS handshake between
# `openssl s_server -Verify` and `openssl s_client`, and the ceremonies'
# guards (existing root, passphrases, shares) must hold.
# Usage: hierarchy_test.sh PKICTL TESTLIB
set -u
PKICTL=$(realpath "$1")
source "$2"

PKI="$T_TMP/pki"
PASS="$T_TMP/ca-passphrase"
echo "demo-ca-passphrase" >"$PASS"
"$PKICTL" ceremony demo --out "$PKI" --passphrase-file "$PASS" >/dev/null || {
  echo "ceremony demo failed"; exit 1; }
ROOT="$PKI/root-ca/certs/root-ca.crt"
TS="$PKI/trust-stores"

# ca_of DIR names the CA that issues the services under DIR (the catalogue's
# mapping, restated here as the expectation).
ca_of() {
  case "$1" in
    agents/*) echo agents-ca ;;
    load-balancer*) echo load-balancer-ca ;;
    external/*) echo external-ca ;;
    *) echo infrastructure-ca ;;
  esac
}

# service_certs lists every service certificate (not the chain files).
service_certs() {
  find "$PKI/service-certificates" -name '*.crt' ! -name '*-chain.crt' | sort
}

test_layout_and_modes() {
  local f
  t_check test -f "$ROOT"
  t_check test -f "$TS/agent-truststore.pem"
  for ca in infrastructure-ca agents-ca external-ca load-balancer-ca; do
    t_check test -f "$PKI/intermediate-ca/$ca/certs/$ca.crt" || return 1
    t_check test -f "$TS/$ca-truststore.pem" || return 1
  done
  [ "$(service_certs | wc -l)" -eq 23 ] || { t_log "expected 23 service certificates"; return 1; }
  # Every private key and share is 0600; no key is ever in the clear for a CA.
  for f in $(find "$PKI" -name '*.key' -o -name '*.sealed' -o -name '*.share'); do
    [ "$(stat -c %a "$f")" = 600 ] || { t_log "$f is not 0600"; return 1; }
  done
  [ -z "$(find "$PKI/root-ca" "$PKI/intermediate-ca" -name '*.key')" ] || return 1
  grep -q 'BEGIN PKID SEALED PRIVATE KEY' "$PKI/root-ca/private/root-ca.key.sealed"
}

test_openssl_verifies_cas() {
  t_check openssl verify -x509_strict -CAfile "$ROOT" "$ROOT" || return 1
  for ca in infrastructure-ca agents-ca external-ca; do
    t_check openssl verify -x509_strict -CAfile "$ROOT" \
      "$PKI/intermediate-ca/$ca/certs/$ca.crt" || return 1
  done
  t_check openssl verify -x509_strict -CAfile "$ROOT" \
    -untrusted "$PKI/intermediate-ca/infrastructure-ca/certs/infrastructure-ca.crt" \
    "$PKI/intermediate-ca/load-balancer-ca/certs/load-balancer-ca.crt"
}

test_openssl_verifies_every_service_cert() {
  local crt dir ca purpose wrong
  for crt in $(service_certs); do
    dir=${crt#"$PKI/service-certificates/"}
    ca=$(ca_of "$dir")
    if "$PKICTL" inspect "$crt" | grep -q 'Extended usage: *serverAuth'; then
      purpose=sslserver wrong=sslclient
    else
      purpose=sslclient wrong=sslserver
    fi
    # Against the root, with the chain file a peer would send...
    t_check openssl verify -x509_strict -purpose $purpose -CAfile "$ROOT" \
      -untrusted "${crt%.crt}-chain.crt" "$crt" >/dev/null || return 1
    # ...against the issuing CA's trust store...
    t_check openssl verify -x509_strict -purpose $purpose -CAfile "$TS/$ca-truststore.pem" \
      "$crt" >/dev/null || return 1
    # ...and not for the other purpose: the EKU is exact.
    if openssl verify -x509_strict -purpose $wrong -CAfile "$TS/$ca-truststore.pem" \
      "$crt" >/dev/null 2>&1; then
      t_log "$crt verifies for $wrong too"
      return 1
    fi
  done
}

test_lb_has_seed_names() {
  local text
  text=$(openssl x509 -in "$PKI/service-certificates/load-balancer/active/lb-current.crt" -noout -ext subjectAltName)
  for n in 'DNS:cybersec-framework.local' 'DNS:api.cybersec-framework.local' \
    'DNS:\*.cybersec-framework.local' 'DNS:localhost' 'IP Address:127.0.0.1'; do
    grep -q "$n" <<<"$text" || { t_log "missing $n in $text"; return 1; }
  done
  # The seed's "127.0.0.1" is an IP SAN, never a DNS name.
  ! grep -q 'DNS:127.0.0.1' <<<"$text"
}

test_mutual_tls_handshake() {
  local s=$PKI/service-certificates port
  t_spawn openssl s_server -accept 127.0.0.1:0 -naccept 1 -Verify 2 -verify_return_error \
    -purpose sslclient -CAfile "$TS/agent-truststore.pem" \
    -cert "$s/infrastructure/vault/vault-server.crt" \
    -key "$s/infrastructure/vault/vault-server.key" \
    -cert_chain "$s/infrastructure/vault/vault-server-chain.crt" -www >server.log 2>&1
  for _ in $(seq 50); do
    port=$(sed -n 's/^ACCEPT 127.0.0.1:\([0-9]*\)$/\1/p' server.log)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { t_log "s_server did not start"; cat server.log >&2; return 1; }
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
    -cert "$s/agents/pki-agent/pki-agent-client.crt" \
    -key "$s/agents/pki-agent/pki-agent-client.key" \
    -cert_chain "$s/agents/pki-agent/pki-agent-client-chain.crt" \
    -CAfile "$TS/infrastructure-ca-truststore.pem" -verify_return_error \
    -verify_hostname vault.cybersec-framework.local -purpose sslserver -ign_eof \
    >client.log 2>&1 || { cat client.log >&2; return 1; }
  wait 2>/dev/null
  grep -q 'Verify return code: 0 (ok)' client.log || { cat client.log >&2; return 1; }
  grep -q 'Verified peername: vault.cybersec-framework.local' client.log || return 1
  # The server checked the client's certificate down to the leaf.
  grep -q 'depth=0 O = Cybersec Framework, CN = pki-agent' server.log || { cat server.log >&2; return 1; }
}

# Where each certificate sends a relying party: its issuer's CRL
# (cRLDistributionPoints) and certificate (AIA caIssuers), as OpenSSL reads
# them; OCSP on leaves only; nothing on the root.
test_crl_and_issuer_pointers() {
  local text url=http://127.0.0.1:8081
  text=$(openssl x509 -in "$PKI/service-certificates/infrastructure/vault/vault-server.crt" \
    -noout -text) || return 1
  for want in 'X509v3 CRL Distribution Points' "URI:$url/crl/infrastructure-ca.crl" \
    "OCSP - URI:$url/" "CA Issuers - URI:$url/ca/infrastructure-ca.crt"; do
    grep -qF "$want" <<<"$text" || { t_log "vault-server: no '$want' in"; t_log "$text"; return 1; }
  done
  text=$(openssl x509 -in "$PKI/intermediate-ca/agents-ca/certs/agents-ca.crt" -noout -text)
  grep -qF "URI:$url/crl/root.crl" <<<"$text" &&
    grep -qF "CA Issuers - URI:$url/ca/root.crt" <<<"$text" || { t_log "$text"; return 1; }
  ! grep -q 'OCSP' <<<"$text" || { t_log "agents-ca has an OCSP URL"; return 1; }
  text=$(openssl x509 -in "$PKI/intermediate-ca/load-balancer-ca/certs/load-balancer-ca.crt" \
    -noout -text)
  grep -qF "URI:$url/crl/infrastructure-ca.crl" <<<"$text" &&
    grep -qF "CA Issuers - URI:$url/ca/infrastructure-ca.crt" <<<"$text" || { t_log "$text"; return 1; }
  text=$(openssl x509 -in "$ROOT" -noout -text)
  ! grep -qE 'CRL Distribution|Authority Information Access' <<<"$text" ||
    { t_log "the root points somewhere: $text"; return 1; }
  text=$("$PKICTL" inspect "$PKI/service-certificates/agents/pki-agent/pki-agent-client.crt")
  grep -qE "^  CRL: +$url/crl/agents-ca.crl\$" <<<"$text" &&
    grep -qE "^  Issuer cert: +$url/ca/agents-ca.crt\$" <<<"$text" || { t_log "$text"; return 1; }
}

test_inspect_summarises() {
  local out
  out=$("$PKICTL" inspect "$PKI/intermediate-ca/load-balancer-ca/certs/load-balancer-ca.crt") || return 1
  grep -q 'CA: *yes, path length 0' <<<"$out" || { t_log "$out"; return 1; }
  grep -q 'Permitted: *DNS:cybersec-framework.local' <<<"$out" || { t_log "$out"; return 1; }
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem \
    -subj /CN=probe -addext subjectAltName=DNS:probe.cybersec-framework.local -out r.csr 2>/dev/null
  out=$("$PKICTL" inspect r.csr) || return 1
  grep -q 'Certificate request (signature verified)' <<<"$out" &&
    grep -q 'DNS:probe.cybersec-framework.local' <<<"$out"
}

test_demo_refuses_existing_root() {
  t_expect_fail 'already holds a root' "$PKICTL" ceremony demo --out "$PKI" --passphrase-file "$PASS"
}

# fingerprint lists every file under a folder with its hash and mode, to
# show a failed command wrote nothing.
fingerprint() { (cd "$1" && find . -type f -printf '%p %m\n' -exec sha256sum {} \; | sort); }

test_root_with_passphrase() {
  echo "root passphrase one" >root.pass
  echo "not the root passphrase" >wrong.pass
  t_check "$PKICTL" ceremony root --out tree --root-passphrase-file root.pass || return 1
  local before
  before=$(fingerprint tree)
  t_expect_fail 'wrong passphrase' "$PKICTL" ceremony intermediate --out tree \
    --root-passphrase-file wrong.pass --passphrase-file "$PASS" || return 1
  [ "$before" = "$(fingerprint tree)" ] || { t_log "a failed ceremony wrote files"; return 1; }
  t_check "$PKICTL" ceremony intermediate --out tree --root-passphrase-file root.pass \
    --passphrase-file "$PASS" --ca external-ca || return 1
  t_check openssl verify -x509_strict -CAfile tree/root-ca/certs/root-ca.crt \
    tree/intermediate-ca/external-ca/certs/external-ca.crt
}

test_root_from_any_three_of_five_shares() {
  mkdir tree && cp -a "$PKI/root-ca" tree/ || return 1
  local sh=$PKI/root-ca/shares before
  before=$(fingerprint tree)
  # Two shares reveal nothing and are refused; nothing is written.
  t_expect_fail 'too few shares' "$PKICTL" ceremony intermediate --out tree \
    --share "$sh/custodian-2.share" --share "$sh/custodian-4.share" --passphrase-file "$PASS" || return 1
  # A share given twice does not count twice.
  t_expect_fail 'share' "$PKICTL" ceremony intermediate --out tree \
    --share "$sh/custodian-2.share" --share "$sh/custodian-2.share" \
    --share "$sh/custodian-4.share" --passphrase-file "$PASS" || return 1
  [ "$before" = "$(fingerprint tree)" ] || { t_log "a failed ceremony wrote files"; return 1; }
  t_check "$PKICTL" ceremony intermediate --out tree --share "$sh/custodian-2.share" \
    --share "$sh/custodian-4.share" --share "$sh/custodian-5.share" \
    --passphrase-file "$PASS" --ca agents-ca || return 1
  t_check openssl verify -x509_strict -CAfile tree/root-ca/certs/root-ca.crt \
    tree/intermediate-ca/agents-ca/certs/agents-ca.crt
}

test_offline_issue_wrong_ca_passphrase() {
  mkdir tree && cp -a "$PKI/." tree/ || return 1
  echo "wrong" >wrong.pass
  local before
  before=$(fingerprint tree)
  t_expect_fail 'wrong passphrase' "$PKICTL" issue --offline --out tree --service redis \
    --passphrase-file wrong.pass || return 1
  [ "$before" = "$(fingerprint tree)" ] || { t_log "a failed issue wrote files"; return 1; }
  t_check "$PKICTL" issue --offline --out tree --service redis --usage client \
    --passphrase-file "$PASS" || return 1
  ! cmp -s tree/service-certificates/infrastructure/redis/redis-client.crt \
    "$PKI/service-certificates/infrastructure/redis/redis-client.crt"
}

t_run layout_and_modes test_layout_and_modes
t_run openssl_verifies_cas test_openssl_verifies_cas
t_run openssl_verifies_every_service_cert test_openssl_verifies_every_service_cert
t_run lb_has_seed_names test_lb_has_seed_names
t_run mutual_tls_handshake test_mutual_tls_handshake
t_run crl_and_issuer_pointers test_crl_and_issuer_pointers
t_run inspect_summarises test_inspect_summarises
t_run demo_refuses_existing_root test_demo_refuses_existing_root
t_run root_with_passphrase test_root_with_passphrase
t_run root_from_any_three_of_five_shares test_root_from_any_three_of_five_shares
t_run offline_issue_wrong_ca_passphrase test_offline_issue_wrong_ca_passphrase
t_finish
