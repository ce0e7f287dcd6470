#include "server/pipeline/issue.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/sha.h>

#include "lib/cert.h"
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

void pkid_issue_run(pkid_job *job) {
  pki_csr csr;
  pki_profile profile;
  memset(&profile, 0, sizeof(profile));
  job->ok = 0;
  if (!pki_csr_parse(&csr, job->csr, job->csr_len, &job->err)) return;
  if (!pki_profile_for_service(&profile, job->cat, job->svc, job->rec.usage, &job->err)) {
    pki_csr_cleanup(&csr);
    return;
  }
  uint32_t lifetime = profile.validity_s;
  if (job->validity_s != 0 && job->validity_s < lifetime) lifetime = job->validity_s;
  pki_issue_request req = {
      .profile = &profile,
      .serial = job->rec.serial,
      .spki = CBS_data(&csr.spki),
      .spki_len = CBS_len(&csr.spki),
      /* Names the CSR asks for must be the profile's; none asked: all. */
      .names = csr.num_names > 0 ? csr.names : NULL,
      .num_names = csr.num_names,
  };
  const pki_issuer *issuer = &job->rec.ca->issuer;
  pki_validity(&req.not_before, &req.not_after, issuer, lifetime, job->now);
  SHA256(CBS_data(&csr.spki), CBS_len(&csr.spki), job->rec.key_hash);
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
