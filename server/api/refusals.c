/* refusals.c: refused requests, counted and journaled (see refusals.h). */
#include "server/api/refusals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/grpc_status.h"
#include "server/pipeline/event.h"

typedef struct refusal {
  int used;
  uint64_t hash;
  char identity[512];
  char service[256];
  char method[64];
  int status;
  char reason[256];
  uint32_t count;
  int64_t first, last;
} refusal;

struct pkid_refusals {
  pkid_workers *workers;
  uint32_t window_s;
  int64_t window_start; /* 0: nothing counted */
  refusal keys[PKID_REFUSAL_KEYS + 1]; /* the last: the "*" overflow key */
};

pkid_refusals *pkid_refusals_new(pkid_workers *workers, uint32_t window_s, pki_err *err) {
  pkid_refusals *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  r->workers = workers;
  r->window_s = window_s > 0 ? window_s : 10;
  return r;
}

/* fnv1a over the key's parts, NUL-separated. */
static uint64_t fnv1a(uint64_t h, const char *s) {
  for (; *s != '\0'; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return (h ^ 0xff) * 0x100000001b3ull;
}

static void set_key(refusal *k, uint64_t hash, const char *identity, const char *service,
                    const char *method, int status, const char *reason) {
  k->used = 1;
  k->hash = hash;
  snprintf(k->identity, sizeof(k->identity), "%s", identity);
  snprintf(k->service, sizeof(k->service), "%s", service);
  snprintf(k->method, sizeof(k->method), "%s", method);
  k->status = status;
  snprintf(k->reason, sizeof(k->reason), "%s", reason);
}

void pkid_refusals_note(pkid_refusals *r, const char *identity, const char *service,
                        const char *method, int grpc_status, const char *reason, int64_t now) {
  if (service == NULL) service = "";
  char status[12];
  snprintf(status, sizeof(status), "%d", grpc_status);
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(fnv1a(fnv1a(fnv1a(fnv1a(h, identity), service), method), status), reason);
  /* Open addressing over the first PKID_REFUSAL_KEYS slots; a full table
   * counts under the overflow key. */
  refusal *k = NULL;
  for (size_t i = 0; i < PKID_REFUSAL_KEYS; i++) {
    refusal *c = &r->keys[(h + i) % PKID_REFUSAL_KEYS];
    if (!c->used) {
      set_key(c, h, identity, service, method, grpc_status, reason);
      k = c;
      break;
    }
    if (c->hash == h && c->status == grpc_status && strcmp(c->identity, identity) == 0 &&
        strcmp(c->service, service) == 0 && strcmp(c->method, method) == 0 &&
        strncmp(c->reason, reason, sizeof(c->reason) - 1) == 0) {
      k = c;
      break;
    }
  }
  if (k == NULL) {
    k = &r->keys[PKID_REFUSAL_KEYS];
    if (!k->used) {
      set_key(k, 0, "*", "", "*", grpc_status,
              "more distinct refusals in this window than pkid keeps apart");
    }
  }
  if (k->count == 0) k->first = now;
  if (k->count < UINT32_MAX) k->count++;
  k->last = now;
  if (r->window_start == 0) r->window_start = now;
}

/* journal submits one key's record; 0 when the pool would not take it. */
static int journal(pkid_refusals *r, refusal *k) {
  char detail[512];
  snprintf(detail, sizeof(detail), "%s: %s: %s", k->method, pki_grpc_status_name(k->status),
           k->reason);
  pkid_event ev = {.kind = PKI_EVENT_REFUSED,
                   .outcome = PKI_OUTCOME_REFUSED,
                   .identity = k->identity,
                   .service = k->service,
                   .count = k->count,
                   .first = k->first,
                   .last = k->last,
                   .detail = detail};
  pki_err err;
  return pkid_event_submit(r->workers, &ev, NULL, NULL, &err);
}

void pkid_refusals_flush(pkid_refusals *r) {
  int kept = 0;
  for (size_t i = 0; i <= PKID_REFUSAL_KEYS; i++) {
    refusal *k = &r->keys[i];
    if (!k->used || k->count == 0) continue;
    if (journal(r, k)) {
      k->count = 0;
    } else {
      kept = 1;
    }
  }
  /* A key the pool would not take keeps its count for the next tick; the
   * journaled ones stay in their slots meanwhile (count 0), so that every
   * key is still found where its probe put it. */
  if (!kept) {
    memset(r->keys, 0, sizeof(r->keys));
    r->window_start = 0;
  }
}

void pkid_refusals_tick(pkid_refusals *r, int64_t now) {
  if (r->window_start != 0 && now - r->window_start >= (int64_t)r->window_s) {
    pkid_refusals_flush(r);
  }
}

void pkid_refusals_free(pkid_refusals *r) { free(r); }
