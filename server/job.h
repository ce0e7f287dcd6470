/* job.h: a change pkid makes durable: an issuance, a revocation, or the
 * reservation of a block of serial numbers.
 *
 * The loop thread fills a job and hands it to the worker pool (workers.h);
 * issue jobs are signed by a worker (issue.h); the committer writes every
 * job's journal record (store.h); the loop gets the job back and answers.
 * A job belongs to one thread at a time, passed along by the queues. */
#ifndef PKID_SERVER_JOB_H
#define PKID_SERVER_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/serial.h"
#include "lib/sig.h"
#include "lib/usage.h"
#include "server/ca.h"
#include "server/grpc.h"

typedef enum pkid_job_kind {
  PKID_JOB_ISSUE = 1,
  PKID_JOB_REVOKE = 2,
  PKID_JOB_RESERVE = 3, /* a block of serial sequence numbers */
} pkid_job_kind;

typedef struct pkid_job {
  pkid_job_kind kind;
  pkid_pending pending; /* the call to answer; loop thread only */
  uint64_t request_id;
  int streaming; /* answer as an IssueStream message */
  char identity[512]; /* who asked */
  int64_t now;
  /* Issue inputs, fixed before the job leaves the loop. */
  const pki_catalog *cat;
  const pkid_ca *ca;
  const pki_catalog_service *svc;
  pki_usage usage;
  uint32_t validity_s;
  pki_serial serial; /* issue: the new serial; revoke: the one revoked */
  uint8_t *csr; /* owned */
  size_t csr_len;
  int has_token;        /* issued on a bootstrap token... */
  uint8_t token_id[32]; /* ...with this id, journaled as used */
  /* How the worker signs for |ca| (its batched ECDSA), NULL: directly.
   * Set by the worker that runs the job. */
  const pki_signer *signer;
  /* Revoke inputs. */
  uint8_t reason; /* CRLReason */
  /* Reserve inputs: sequence numbers [block_first, block_first + block_count). */
  uint64_t block_first, block_count;
  /* Outputs. */
  int ok;
  pki_err err;
  uint8_t *cert; /* owned, DER */
  size_t cert_len;
  int64_t not_before, not_after;
  uint8_t key_hash[32]; /* SHA-256 of the subject's SPKI */
  /* The first OCSP response (SHA-1 CertID), signed with the certificate or
   * the revocation, so the responder has it before anyone can ask. */
  uint8_t *ocsp; /* owned, DER */
  size_t ocsp_len;
  int64_t ocsp_next_update;
} pkid_job;

/* pkid_job_free frees a job and what it owns (NULL is fine). */
void pkid_job_free(pkid_job *job);

#endif /* PKID_SERVER_JOB_H */
