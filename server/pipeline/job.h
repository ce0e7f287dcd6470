/* job.h: a change pkid makes durable, on its way through the pipeline: an
 * issuance, a revocation, or the reservation of a block of serial numbers.
 *
 * Who owns a job when: the owner (the api layer for issuances and
 * revocations, the serial allocator for reservations) fills it on the loop
 * thread and hands it to the worker pool (workers.h); from then until the
 * pool calls |done| on the loop thread, the job belongs to the pool's
 * threads, passed along by its queues (a worker signs it, pkid_issue_run;
 * the committer writes its record, pkid_jobs_commit). After |done| it is
 * the owner's again. Jobs are embedded in the owner's own structure (the
 * owner finds it again with container_of); the pipeline never allocates or
 * frees one.
 *
 * Errors: a job carries its outcome: |ok|, else |err| says why. */
#ifndef PKID_SERVER_PIPELINE_JOB_H
#define PKID_SERVER_PIPELINE_JOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/sig.h"
#include "server/store/store.h"

typedef struct pkid_job pkid_job;

/* pkid_job_done_fn gives a finished job back to its owner (loop thread):
 * |ok| and its record durable, or failed and nothing recorded. */
typedef void (*pkid_job_done_fn)(pkid_job *job);

struct pkid_job {
  /* The change and its journal record (store.h): rec.type says what the
   * job is. rec.identity, rec.cert point into the job. */
  pkid_record rec;
  char identity[512]; /* who asked */
  /* Issue inputs, fixed before the job leaves the loop. */
  const pki_catalog *cat;
  const pki_catalog_service *svc;
  uint32_t validity_s; /* the caller's wish; the profile's lifetime caps it */
  uint8_t *csr;        /* owned */
  size_t csr_len;
  int64_t now; /* the time of the request, seconds */
  /* The subject CN; "" for the profile's (the service's name). ACME sets
   * one of the order's names: its clients renew what the certificate
   * names, CN included (and the CA/Browser Forum's BR 7.1.4.3 want a CN
   * to be one of the SANs). */
  char common_name[254]; /* a DNS name (RFC 1035 2.3.4: 253) and a NUL */
  /* Revoke input: with reason keyCompromise, also revoke every other
   * unexpired certificate of the same key. */
  int same_key;
  /* An ISSUE whose |cert| is given (import.h): the worker first checks
   * that rec.ca's key signed it, and fails the job if not. */
  int verify_cert;
  /* A change another node of the fleet made (import.h): its place in the
   * fleet's order (follow.h, fleet_seq); 0: this node's own. It is in the
   * fleet's database already, so it is not claimed there. */
  uint64_t fleet_seq;
  /* How the worker that runs the job signs for rec.ca (ca/signer.h); NULL:
   * with the key directly. */
  const pki_signer *signer;
  /* Outputs. */
  int ok;
  pki_err err;
  uint8_t *cert; /* owned, DER; rec.cert points here */
  /* The first OCSP response (SHA-1 CertID), signed with the certificate or
   * the revocation, so the responder has it before anyone can ask. */
  uint8_t *ocsp; /* owned, DER */
  size_t ocsp_len;
  int64_t ocsp_next_update;
  /* A keyCompromise revocation's other certificates of the key (with
   * same_key): their REVOKE records, journaled in the same commit (owned). */
  pkid_record *same_key_recs;
  size_t num_same_key;
  pkid_job_done_fn done;
  /* Set by the owner (loop thread) when nobody waits for the job any more
   * (its call was reset): a worker that has not signed it yet fails it
   * instead (PKI_ERR_UNAVAILABLE), so nothing is signed or journaled. */
  atomic_int cancelled;
};

/* pkid_job_init zeroes |job| and sets what it is and who gets it back. */
void pkid_job_init(pkid_job *job, pki_record_type type, pkid_job_done_fn done);

/* pkid_job_set_identity copies who asked into the job and its record. */
void pkid_job_set_identity(pkid_job *job, const char *identity);

/* pkid_job_cleanup frees what the job owns (not the job). */
void pkid_job_cleanup(pkid_job *job);

/* pkid_job_apply makes a durable job's change visible, on the loop thread
 * before anyone hears of it: its record goes into the store's status index
 * and its first OCSP response to the responder's store. Of two revocations
 * of one serial, the first to become durable stands (as a replay of the
 * journal would have it): the later job is given the first's time and
 * reason, and its own response is dropped. */
void pkid_job_apply(pkid_job *job, pkid_store *store);

/* pkid_jobs_commit is the worker pool's commit function (workers.h) for
 * pkid's store (|ctx|): the records of the jobs that succeeded, in one
 * pkid_store_commit. A job that failed (a bad CSR, a name outside its
 * profile) left nothing to record: nothing was issued.
 *
 * Keys revoked for keyCompromise are decided here, on the one thread that
 * writes the journal, so that no issuance can slip between a key's
 * revocation and the refusal of its next certificate: an issuance for a
 * key whose keyCompromise revocation is durable, or ahead of it in the
 * same commit, fails (PKI_ERR_DENIED) and is not journaled. A
 * keyCompromise revocation learns its certificate's key, and with
 * same_key the key's other certificates, from the whole journal
 * (pkid_store_key_search), while this commit waits. */
int pkid_jobs_commit(void *ctx, pkid_job **jobs, size_t n, pki_err *err);

#endif /* PKID_SERVER_PIPELINE_JOB_H */
