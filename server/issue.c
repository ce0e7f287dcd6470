#include "server/issue.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/sha.h>

#include "lib/cert.h"
#include "lib/csr.h"
#include "lib/profile.h"

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
  if (pki_cert_issue(&job->cert, &job->cert_len, &job->ca->issuer, &req, &job->err)) {
    job->ok = 1;
    job->not_after = req.not_after;
  }
  pki_csr_cleanup(&csr);
  pki_profile_cleanup(&profile);
}

void pkid_job_free(pkid_job *job) {
  if (job == NULL) return;
  free(job->csr);
  free(job->cert);
  free(job);
}
