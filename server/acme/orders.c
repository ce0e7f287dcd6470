/* orders.c: ACME orders in memory (see orders.h). */
#include "server/acme/orders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "lib/base64.h"

#define NUM_BUCKETS 4096

/* An account's unfinished orders (pending, ready, processing), counted as
 * they come and go so that a new order does not walk all the others. */
typedef struct account_count {
  char account[PKID_ACME_ACCOUNT_ID_MAX + 1];
  size_t unfinished;
  struct account_count *next;
} account_count;

struct pkid_acme_orders {
  pkid_acme_order *buckets[NUM_BUCKETS];
  account_count *accounts[NUM_BUCKETS];
  size_t count;
  size_t max_orders;
  size_t max_pending_per_account;
};

const char *pkid_acme_status_name(pkid_acme_status s) {
  switch (s) {
    case PKID_ACME_PENDING: return "pending";
    case PKID_ACME_READY: return "ready";
    case PKID_ACME_PROCESSING: return "processing";
    case PKID_ACME_VALID: return "valid";
    case PKID_ACME_INVALID: return "invalid";
    case PKID_ACME_DEACTIVATED: return "deactivated";
  }
  return "invalid";
}

const char *pkid_acme_chall_type_name(pkid_acme_chall_type t) {
  return t == PKID_ACME_HTTP_01 ? "http-01" : "tls-alpn-01";
}

/* random_text writes |n| random octets as base64url into |out|. */
static void random_text(char *out, size_t out_size, size_t n) {
  uint8_t raw[32];
  size_t len;
  pki_err err;
  RAND_bytes(raw, n);
  pki_base64_encode(out, out_size, &len, raw, n, PKI_BASE64_URL | PKI_BASE64_NO_PAD, &err);
}

/* bucket: ids are random, so their first octets spread evenly. */
static size_t bucket(const char *id, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)id[i]) * 16777619u;
  return h % NUM_BUCKETS;
}

/* account_slot is the link that holds |account|'s count, or the NULL at
 * the end of its bucket. */
static account_count **account_slot(pkid_acme_orders *o, const char *account) {
  account_count **link = &o->accounts[bucket(account, strlen(account))];
  while (*link != NULL && strcmp((*link)->account, account) != 0) link = &(*link)->next;
  return link;
}

static size_t unfinished_of(pkid_acme_orders *o, const char *account) {
  account_count *c = *account_slot(o, account);
  return c != NULL ? c->unfinished : 0;
}

/* count_finished: |ord| is no longer unfinished; its account's count
 * goes down, and the entry with it at zero. */
static void count_finished(pkid_acme_orders *o, const pkid_acme_order *ord) {
  account_count **link = account_slot(o, ord->account), *c = *link;
  if (c == NULL) return;
  if (--c->unfinished == 0) {
    *link = c->next;
    free(c);
  }
}

pkid_acme_orders *pkid_acme_orders_new(size_t max_orders, size_t max_pending_per_account) {
  pkid_acme_orders *o = calloc(1, sizeof(*o));
  if (o == NULL) return NULL;
  o->max_orders = max_orders;
  o->max_pending_per_account = max_pending_per_account;
  return o;
}

static void order_free(pkid_acme_order *ord) {
  free(ord->authz);
  free(ord->chain_pem);
  free(ord);
}

void pkid_acme_orders_free(pkid_acme_orders *o) {
  if (o == NULL) return;
  for (size_t b = 0; b < NUM_BUCKETS; b++) {
    for (pkid_acme_order *ord = o->buckets[b], *next; ord != NULL; ord = next) {
      next = ord->next;
      order_free(ord);
    }
    for (account_count *c = o->accounts[b], *next; c != NULL; c = next) {
      next = c->next;
      free(c);
    }
  }
  free(o);
}

static int unfinished(const pkid_acme_order *ord) {
  return ord->status == PKID_ACME_PENDING || ord->status == PKID_ACME_READY ||
         ord->status == PKID_ACME_PROCESSING;
}

static int expired(const pkid_acme_order *ord, int64_t now) {
  /* An order being signed is never dropped: its job comes back to it. */
  return ord->status != PKID_ACME_PROCESSING && now >= ord->expires;
}

pkid_acme_order *pkid_acme_order_new(pkid_acme_orders *o, const char *account,
                                     const char *service, const pkid_acme_order_req *req,
                                     int64_t now, pki_err *err) {
  if (o->count >= o->max_orders && pkid_acme_orders_sweep(o, now) >= o->max_orders) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "pkid holds %zu orders already; try again later",
            o->count);
    return NULL;
  }
  /* Expired orders count until a sweep drops them: sweep before saying no. */
  if (unfinished_of(o, account) >= o->max_pending_per_account) pkid_acme_orders_sweep(o, now);
  size_t pending = unfinished_of(o, account);
  if (pending >= o->max_pending_per_account) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "the account has %zu orders in progress, the most it may",
            pending);
    return NULL;
  }
  account_count **link = account_slot(o, account);
  if (*link == NULL && (*link = calloc(1, sizeof(**link))) != NULL) {
    snprintf((*link)->account, sizeof((*link)->account), "%s", account);
  }
  pkid_acme_order *ord = *link != NULL ? calloc(1, sizeof(*ord)) : NULL;
  if (ord == NULL || (ord->authz = calloc(req->num_names, sizeof(*ord->authz))) == NULL) {
    free(ord);
    if (*link != NULL && (*link)->unfinished == 0) {
      free(*link);
      *link = NULL;
    }
    PKI_ERR_OOM(err);
    return NULL;
  }
  (*link)->unfinished++;
  random_text(ord->id, sizeof(ord->id), 16);
  snprintf(ord->account, sizeof(ord->account), "%s", account);
  snprintf(ord->service, sizeof(ord->service), "%s", service);
  snprintf(ord->replaces, sizeof(ord->replaces), "%s", req->replaces);
  ord->status = PKID_ACME_PENDING;
  ord->created = now;
  ord->expires = now + PKID_ACME_PENDING_S;
  ord->num_authz = req->num_names;
  for (size_t i = 0; i < req->num_names; i++) {
    pkid_acme_authz *a = &ord->authz[i];
    memcpy(a->name, req->names[i], sizeof(a->name));
    a->status = PKID_ACME_PENDING;
    for (int t = 0; t < PKID_ACME_NUM_CHALL_TYPES; t++) {
      a->chall[t].type = (pkid_acme_chall_type)t;
      a->chall[t].status = PKID_ACME_PENDING;
      random_text(a->chall[t].token, sizeof(a->chall[t].token), 32);
    }
  }
  size_t b = bucket(ord->id, strlen(ord->id));
  ord->next = o->buckets[b];
  o->buckets[b] = ord;
  o->count++;
  return ord;
}

pkid_acme_order *pkid_acme_order_find(pkid_acme_orders *o, const char *id, size_t len,
                                      int64_t now) {
  if (len != PKID_ACME_ID_TEXT - 1) return NULL;
  for (pkid_acme_order *ord = o->buckets[bucket(id, len)]; ord != NULL; ord = ord->next) {
    if (memcmp(ord->id, id, len) == 0) return expired(ord, now) ? NULL : ord;
  }
  return NULL;
}

void pkid_acme_order_update(pkid_acme_orders *o, pkid_acme_order *ord) {
  if (ord->status != PKID_ACME_PENDING) return;
  size_t valid = 0;
  for (size_t i = 0; i < ord->num_authz; i++) {
    const pkid_acme_authz *a = &ord->authz[i];
    if (a->status == PKID_ACME_VALID) valid++;
    if (a->status == PKID_ACME_INVALID || a->status == PKID_ACME_DEACTIVATED) {
      ord->status = PKID_ACME_INVALID;
      for (int t = 0; t < PKID_ACME_NUM_CHALL_TYPES; t++) {
        if (a->chall[t].error.set) ord->error = a->chall[t].error;
      }
      if (!ord->error.set) {
        ord->error.set = 1;
        ord->error.type = PKID_ACME_UNAUTHORIZED;
        snprintf(ord->error.detail, sizeof(ord->error.detail),
                 "the authorization of %s was deactivated", a->name);
      }
      count_finished(o, ord);
      return;
    }
  }
  if (valid == ord->num_authz) ord->status = PKID_ACME_READY;
}

void pkid_acme_order_finish(pkid_acme_orders *o, pkid_acme_order *ord, char *chain_pem,
                            size_t chain_pem_len, const pkid_acme_failure *error, int64_t now) {
  if (unfinished(ord)) count_finished(o, ord);
  free(ord->chain_pem);
  ord->chain_pem = chain_pem;
  ord->chain_pem_len = chain_pem_len;
  if (chain_pem != NULL) {
    ord->status = PKID_ACME_VALID;
  } else {
    ord->status = PKID_ACME_INVALID;
    if (error != NULL) ord->error = *error;
  }
  ord->expires = now + PKID_ACME_VALID_S;
}

void pkid_acme_orders_each(pkid_acme_orders *o, const char *account, int64_t now,
                           void (*fn)(void *ctx, const pkid_acme_order *ord), void *ctx) {
  for (size_t b = 0; b < NUM_BUCKETS; b++) {
    for (pkid_acme_order *ord = o->buckets[b]; ord != NULL; ord = ord->next) {
      if (!expired(ord, now) && strcmp(ord->account, account) == 0) fn(ctx, ord);
    }
  }
}

size_t pkid_acme_orders_sweep(pkid_acme_orders *o, int64_t now) {
  for (size_t b = 0; b < NUM_BUCKETS; b++) {
    pkid_acme_order **link = &o->buckets[b];
    while (*link != NULL) {
      pkid_acme_order *ord = *link;
      if (expired(ord, now)) {
        *link = ord->next;
        if (unfinished(ord)) count_finished(o, ord);
        order_free(ord);
        o->count--;
      } else {
        link = &ord->next;
      }
    }
  }
  return o->count;
}
