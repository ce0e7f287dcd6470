#include "server/api/quota.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/siphash.h>

#include "server/metrics/metrics.h"

typedef struct entry {
  char *who; /* NULL: a free slot */
  unsigned in_flight;
  double tokens;
  uint64_t refilled_ms;
} entry;

struct pkid_quotas {
  pkid_quota_limits limits;
  uint64_t sip_key[2];
  entry *slots;
  size_t mask, used;
};

static entry *find(const pkid_quotas *q, const char *who) {
  size_t i = (size_t)SIPHASH_24(q->sip_key, (const uint8_t *)who, strlen(who)) & q->mask;
  for (;;) {
    entry *e = &q->slots[i];
    if (e->who == NULL || strcmp(e->who, who) == 0) return e;
    i = (i + 1) & q->mask;
  }
}

static int grow(pkid_quotas *q) {
  size_t old_cap = q->mask + 1;
  entry *old = q->slots, *slots = calloc(old_cap * 2, sizeof(entry));
  if (slots == NULL) return 0;
  q->slots = slots;
  q->mask = old_cap * 2 - 1;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].who != NULL) *find(q, old[i].who) = old[i];
  }
  free(old);
  return 1;
}

pkid_quotas *pkid_quotas_new(const pkid_quota_limits *limits) {
  pkid_quotas *q = calloc(1, sizeof(*q));
  if (q == NULL) return NULL;
  q->limits = *limits;
  if (q->limits.burst < 1) q->limits.burst = q->limits.rate > 1 ? q->limits.rate : 1;
  q->mask = 31;
  q->slots = calloc(q->mask + 1, sizeof(entry));
  if (q->slots == NULL) {
    free(q);
    return NULL;
  }
  RAND_bytes((uint8_t *)q->sip_key, sizeof(q->sip_key));
  return q;
}

void pkid_quotas_free(pkid_quotas *q) {
  if (q == NULL) return;
  for (size_t i = 0; i <= q->mask; i++) free(q->slots[i].who);
  free(q->slots);
  free(q);
}

/* entry_for finds or makes |who|'s entry, its bucket full. */
static entry *entry_for(pkid_quotas *q, const char *who, uint64_t now_ms) {
  if ((q->used + 1) * 2 > q->mask + 1 && !grow(q)) return NULL;
  entry *e = find(q, who);
  if (e->who == NULL) {
    if ((e->who = strdup(who)) == NULL) return NULL;
    e->tokens = q->limits.burst;
    e->refilled_ms = now_ms;
    q->used++;
  }
  return e;
}

int pkid_quota_take(pkid_quotas *q, const char *who, uint64_t now_ms, uint64_t *retry_ms,
                    pki_err *err) {
  entry *e = entry_for(q, who, now_ms);
  if (e == NULL) {
    *retry_ms = 100;
    PKI_ERR_OOM(err);
    return 0;
  }
  if (e->in_flight >= q->limits.max_in_flight) {
    pkid_metrics_limited("identity_in_flight");
    /* A slot frees when one of its jobs is done: about one commit. */
    *retry_ms = 10;
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "%s has %u requests in flight, its share; retry later",
            who[0] != '\0' ? who : "bootstrap", e->in_flight);
    return 0;
  }
  if (q->limits.rate > 0) {
    e->tokens += (double)(now_ms - e->refilled_ms) * q->limits.rate / 1000.0;
    if (e->tokens > q->limits.burst) e->tokens = q->limits.burst;
    e->refilled_ms = now_ms;
    if (e->tokens < 1.0) {
      pkid_metrics_limited("identity_rate");
      *retry_ms = (uint64_t)((1.0 - e->tokens) * 1000.0 / q->limits.rate) + 1;
      PKI_ERR(err, PKI_ERR_EXHAUSTED, "%s is over its rate of %.0f requests/s; retry later",
              who[0] != '\0' ? who : "bootstrap", q->limits.rate);
      return 0;
    }
    e->tokens -= 1.0;
  }
  e->in_flight++;
  return 1;
}

void pkid_quota_release(pkid_quotas *q, const char *who) {
  entry *e = find(q, who);
  if (e->who != NULL && e->in_flight > 0) e->in_flight--;
}

unsigned pkid_quota_in_flight(const pkid_quotas *q, const char *who) {
  const entry *e = find(q, who);
  return e->who != NULL ? e->in_flight : 0;
}
