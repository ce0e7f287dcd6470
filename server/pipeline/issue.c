#include "server/pipeline/issue.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/cert.h"
#include "lib/cert_info.h"
#include "lib/csr.h"
#include "lib/profile.h"
#include "server/store/status.h"

/* sign_ocsp signs the job's first OCSP response about |rec|, with a SHA-1
 * CertID as RFC 5019 clients (openssl ocsp, haproxy) ask. */
static int sign_ocsp(pkid_job *job, const pkid_cert_record *rec) {
  const pkid_ca *ca = job->rec.ca;
  pki_ocsp_single single;
  memset(&single, 0, sizeof(single));
  pki_ocsp_cert_id_make(&single.id, &ca->ocsp.hashes, PKI_OCSP_HASH_SHA1, &job->rec.serial);
  pkid_cert_record_ocsp(rec, &single);
  single.this_update = job->now;
  single.next_update = job->now + PKID_OCSP_VALIDITY_S;
  job->ocsp_next_update = single.next_update;
  return pki_ocsp_signer_sign_with(&ca->ocsp, job->signer, &job->ocsp, &job->ocsp_len, &single,
                                   1, &job->err);
}

/* The uncompressed P-256 and P-384 SubjectPublicKeyInfo under a named
 * curve (RFC 5480 2.1.1.1, 2.2), up to the point's first octet (0x04), and
 * the whole length: what almost every CSR carries. */
static const uint8_t kP256Prefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                      0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                      0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
static const uint8_t kP384Prefix[] = {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
                                      0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                                      0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00, 0x04};

/* is_canonical_ec: |spki| (of a key the CSR parser has checked is on its
 * curve) is already the encoding pkid would write. */
static int is_canonical_ec(const CBS *spki, pki_key_type type) {
  const uint8_t *prefix = type == PKI_KEY_ECDSA_P256 ? kP256Prefix : kP384Prefix;
  size_t prefix_len = type == PKI_KEY_ECDSA_P256 ? sizeof(kP256Prefix) : sizeof(kP384Prefix);
  size_t total = type == PKI_KEY_ECDSA_P256 ? 2 + 0x59 : 2 + 0x76;
  return CBS_len(spki) == total && memcmp(CBS_data(spki), prefix, prefix_len) == 0;
}

/* canonical_spki gives the CSR's key in pkid's own encoding: a certificate
 * never carries the requester's bytes. X9.62 allows compressed points
 * (and BoringSSL parses them), but RFC 5480 2.2 says the uncompressed form
 * MUST be supported and strict verifiers (Go's crypto/x509) refuse anything
 * else. An EC key already in that form is copied: re-encoding it costs a
 * field inversion (the point to affine coordinates), 5% of an issuance. */
static int canonical_spki(uint8_t **out, size_t *out_len, const pki_csr *csr, pki_err *err) {
  if ((csr->key_type == PKI_KEY_ECDSA_P256 || csr->key_type == PKI_KEY_ECDSA_P384) &&
      is_canonical_ec(&csr->spki, csr->key_type)) {
    if ((*out = OPENSSL_memdup(CBS_data(&csr->spki), CBS_len(&csr->spki))) == NULL) {
      PKI_ERR_OOM(err);
      return 0;
    }
    *out_len = CBS_len(&csr->spki);
    return 1;
  }
  CBB cbb;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, csr->key) ||
      !CBB_finish(&cbb, out, out_len)) {
    CBB_cleanup(&cbb);
    PKI_ERR(err, PKI_ERR_INVALID, "the CSR's public key cannot be re-encoded");
    return 0;
  }
  return 1;
}

/* verify_cert checks that the job's CA signed its given certificate. */
static int verify_cert(pkid_job *job) {
  const pki_issuer *issuer = &job->rec.ca->issuer;
  pki_cert_info info, ca_info;
  if (!pki_cert_info_parse(&info, job->cert, job->rec.cert_len, &job->err)) return 0;
  int ok = pki_cert_info_parse(&ca_info, issuer->cert, issuer->cert_len, &job->err);
  if (ok) {
    ok = pki_cert_verify_signature(&info, &ca_info.spki, &job->err);
    if (!ok) {
      PKI_ERR(&job->err, PKI_ERR_DENIED, "not signed by %s, which it names as its issuer",
              job->rec.ca->def->name);
    }
    pki_cert_info_cleanup(&ca_info);
  }
  pki_cert_info_cleanup(&info);
  return ok;
}

void pkid_issue_run(pkid_job *job) {
  if (job->cert != NULL) {
    /* Signed elsewhere and imported (import.h): once its signature is
     * ours, only its first OCSP response is to be made. */
    pkid_cert_record good;
    memset(&good, 0, sizeof(good));
    job->ok = (!job->verify_cert || verify_cert(job)) && sign_ocsp(job, &good);
    return;
  }
  pki_csr csr;
  pki_profile profile;
  uint8_t *spki = NULL;
  size_t spki_len = 0;
  memset(&profile, 0, sizeof(profile));
  job->ok = 0;
  if (!pki_csr_parse(&csr, job->csr, job->csr_len, &job->err)) return;
  /* The catalogue's key policy: the service's certificates hold only the
   * key types it lists. */
  if (!pki_catalog_service_accepts_key(job->svc, csr.key_type, csr.key_bits)) {
    PKI_ERR(&job->err, PKI_ERR_DENIED, "service '%s' does not take %s keys", job->svc->name,
            pki_key_type_name(csr.key_type, csr.key_bits));
    goto out;
  }
  if (!canonical_spki(&spki, &spki_len, &csr, &job->err) ||
      !pki_profile_for_service(&profile, job->cat, job->svc, job->rec.usage, &job->err)) {
    goto out;
  }
  if (job->common_name[0] != '\0') profile.common_name = job->common_name;
  uint32_t lifetime = profile.validity_s;
  if (job->validity_s != 0 && job->validity_s < lifetime) lifetime = job->validity_s;
  pki_issue_request req = {
      .profile = &profile,
      .serial = job->rec.serial,
      .spki = spki,
      .spki_len = spki_len,
      /* Names the CSR asks for must be the profile's; none asked: all. */
      .names = csr.num_names > 0 ? csr.names : NULL,
      .num_names = csr.num_names,
  };
  const pki_issuer *issuer = &job->rec.ca->issuer;
  pki_validity(&req.not_before, &req.not_after, issuer, lifetime, job->now);
  SHA256(spki, spki_len, job->rec.key_hash);
  size_t cert_len;
  if (pki_cert_issue_with(&job->cert, &cert_len, issuer, job->signer, &req, &job->err)) {
    job->rec.cert = job->cert;
    job->rec.cert_len = cert_len;
    job->rec.not_before = req.not_before;
    job->rec.not_after = req.not_after;
    pkid_cert_record good;
    memset(&good, 0, sizeof(good));
    job->ok = sign_ocsp(job, &good);
  }
out:
  OPENSSL_free(spki);
  pki_csr_cleanup(&csr);
  pki_profile_cleanup(&profile);
}

void pkid_revoke_run(pkid_job *job) {
  pkid_cert_record revoked;
  memset(&revoked, 0, sizeof(revoked));
  revoked.revoked = 1;
  revoked.reason = job->rec.reason;
  revoked.revoked_at = job->rec.revoked_at;
  job->ok = sign_ocsp(job, &revoked);
}
