#include "server/issue.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/sha.h>

#include "lib/cert.h"
#include "lib/csr.h"
#include "lib/profile.h"
#include "server/status.h"

/* sign_ocsp signs the job's first OCSP response, with a SHA-1 CertID as
 * RFC 5019 clients (openssl ocsp, haproxy) ask. */
static int sign_ocsp(pkid_job *job, pki_ocsp_cert_status status) {
  pki_ocsp_single single;
  memset(&single, 0, sizeof(single));
  pki_ocsp_cert_id_make(&single.id, &job->ca->ocsp.hashes, PKI_OCSP_HASH_SHA1, &job->serial);
  single.status = status;
  single.revocation_time = job->now;
  single.revocation_reason = status == PKI_OCSP_REVOKED ? job->reason : -1;
  single.this_update = job->now;
  single.next_update = job->now + PKID_OCSP_VALIDITY_S;
  job->ocsp_next_update = single.next_update;
  return pki_ocsp_signer_sign_with(&job->ca->ocsp, job->signer, &job->ocsp, &job->ocsp_len,
                                   &single, 1, &job->err);
}

void pkid_issue_run(pkid_job *job) {
  pki_csr csr;
  pki_profile profile;
  memset(&profile, 0, sizeof(profile));
  job->ok = 0;
  if (!pki_csr_parse(&csr, job->csr, job->csr_len, &job->err)) return;
  if (!pki_profile_for_service(&profile, job->cat, job->svc, job->usage, &job->err)) {
    pki_csr_cleanup(&csr);
    return;
  }
  uint32_t lifetime = profile.validity_s;
  if (job->validity_s != 0 && job->validity_s < lifetime) lifetime = job->validity_s;
  pki_issue_request req = {
      .profile = &profile,
      .serial = job->serial,
      .spki = CBS_data(&csr.spki),
      .spki_len = CBS_len(&csr.spki),
      /* Names the CSR asks for must be the profile's; none asked: all. */
      .names = csr.num_names > 0 ? csr.names : NULL,
      .num_names = csr.num_names,
  };
  pki_validity(&req.not_before, &req.not_after, &job->ca->issuer, lifetime, job->now);
  job->not_before = req.not_before;
  SHA256(CBS_data(&csr.spki), CBS_len(&csr.spki), job->key_hash);
  if (pki_cert_issue_with(&job->cert, &job->cert_len, &job->ca->issuer, job->signer, &req,
                          &job->err)) {
    job->not_after = req.not_after;
    job->ok = sign_ocsp(job, PKI_OCSP_GOOD);
  }
  pki_csr_cleanup(&csr);
  pki_profile_cleanup(&profile);
}

void pkid_revoke_run(pkid_job *job) { job->ok = sign_ocsp(job, PKI_OCSP_REVOKED); }

void pkid_job_free(pkid_job *job) {
  if (job == NULL) return;
  free(job->csr);
  free(job->cert);
  free(job->ocsp);
  free(job);
}
