/* quota.h: each caller's share of the pipeline, so that one identity
 * cannot take every slot of the worker pool or issue without bound.
 *
 * Per identity (the caller's URI SAN; every caller without a certificate,
 * the bootstrap enrollments, shares one quota) pkid counts the jobs in
 * flight and refills a token bucket at a steady rate: a request past
 * either limit is refused with RESOURCE_EXHAUSTED and a hint of when to
 * retry. Only identities that passed authorization get here, so the table
 * holds at most one entry per catalogue service, plus one. Loop thread. */
#ifndef PKID_SERVER_API_QUOTA_H
#define PKID_SERVER_API_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

typedef struct pkid_quota_limits {
  unsigned max_in_flight; /* jobs of one identity in the pool at once */
  double rate;            /* requests per second, refilled; 0: no rate limit */
  double burst;           /* the bucket's size */
} pkid_quota_limits;

typedef struct pkid_quotas pkid_quotas;

/* pkid_quotas_new returns an empty table, or NULL when out of memory. */
pkid_quotas *pkid_quotas_new(const pkid_quota_limits *limits);
void pkid_quotas_free(pkid_quotas *q);

/* pkid_quota_take lets one more request of |who| in, counting it in
 * flight until pkid_quota_release. Past a limit it fails with
 * PKI_ERR_EXHAUSTED and |*retry_ms|, when to try again. */
int pkid_quota_take(pkid_quotas *q, const char *who, uint64_t now_ms, uint64_t *retry_ms,
                    pki_err *err);

/* pkid_quota_release: a request of |who| taken in is done. */
void pkid_quota_release(pkid_quotas *q, const char *who);

/* pkid_quota_in_flight is what |who| has in flight. */
unsigned pkid_quota_in_flight(const pkid_quotas *q, const char *who);

#endif /* PKID_SERVER_API_QUOTA_H */
