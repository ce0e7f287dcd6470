/* issue.h: one issuance, from a checked request to a signed certificate.
 *
 * The loop thread decides who may have what (api.c) and fills a job; the
 * work (CSR parse and proof-of-possession check, build, lint, sign) is
 * pkid_issue_run, which touches only the job and read-only shared state,
 * so it can run on a worker thread. */
#ifndef PKID_SERVER_ISSUE_H
#define PKID_SERVER_ISSUE_H

#include <stddef.h>
#include <stdint.h>

#include "server/job.h"


/* pkid_issue_run does the work of an issue job and sets ok, err and the
 * outputs: the certificate and its first OCSP response ("good"). */
void pkid_issue_run(pkid_job *job);

/* pkid_revoke_run signs the OCSP response ("revoked") of a revoke job. */
void pkid_revoke_run(pkid_job *job);

#endif /* PKID_SERVER_ISSUE_H */
