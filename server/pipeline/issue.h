/* issue.h: the signing work of a job, from a checked request to a signed
 * certificate and its first OCSP response.
 *
 * The loop thread decides who may have what (the api layer) and fills the
 * job; the work (CSR parse and proof-of-possession check, build, lint,
 * sign) touches only the job and read-only shared state (the catalogue,
 * the CAs), so it runs on a worker thread. Errors: the job's ok and err. */
#ifndef PKID_SERVER_PIPELINE_ISSUE_H
#define PKID_SERVER_PIPELINE_ISSUE_H

#include "server/pipeline/job.h"

/* pkid_issue_run does the work of an ISSUE job and sets ok, err and the
 * outputs: the certificate (and the record's fields that describe it) and
 * its first OCSP response ("good"). A job that comes with its certificate
 * (an import, import.h) gets only the response. */
void pkid_issue_run(pkid_job *job);

/* pkid_revoke_run signs the OCSP response ("revoked") of a REVOKE job. */
void pkid_revoke_run(pkid_job *job);

#endif /* PKID_SERVER_PIPELINE_ISSUE_H */
