/* orders.h: ACME orders, their authorizations and challenges (RFC 8555
 * 7.1.3, 7.1.4, 7.1.5), held in memory while they are alive.
 *
 * An order names identifiers; each gets one authorization, with an
 * http-01 and a tls-alpn-01 challenge. Authorizations are not shared
 * between orders: an order is one client's attempt, and a fleet's service
 * proves its names each time (pkid's certificates live days, not months,
 * so there is nothing to reuse). URLs name the order: authorization i of
 * order O is /acme/authz/O/i, its challenge j /acme/chall/O/i/j.
 *
 * What is durable, and where: accounts are (store/acme_state.h); an
 * order's outcome is its certificate's ISSUE record, which names the
 * account (identity "acme:ACCOUNT"), or an EVENT saying why it failed.
 * An order in progress is not: after a restart its URL is 404 and the
 * client places a new one (RFC 8555 7.4 clients retry a failed order).
 *
 * Lifetimes: a pending or ready order expires PKID_ACME_PENDING_S after it
 * was made (its authorizations with it); a valid order keeps its
 * certificate for download PKID_ACME_VALID_S after issuance; an invalid
 * one is kept as long, so its client can read why. pkid_acme_orders_sweep
 * drops what has expired. Memory is bounded by |max_orders| in all and
 * |max_pending_per_account| not yet finished per account.
 *
 * Threads: the loop thread only. */
#ifndef PKID_SERVER_ACME_ORDERS_H
#define PKID_SERVER_ACME_ORDERS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/serial.h"
#include "server/acme/problem.h"
#include "server/acme/request.h"
#include "server/store/acme_state.h"

#define PKID_ACME_PENDING_S 3600
#define PKID_ACME_VALID_S 86400
#define PKID_ACME_ID_TEXT 23 /* 16 random octets in base64url, and a NUL */
#define PKID_ACME_TOKEN_TEXT 44 /* 32 random octets (RFC 8555 8.1: >= 128 bits) */

typedef enum pkid_acme_status {
  PKID_ACME_PENDING,
  PKID_ACME_READY,
  PKID_ACME_PROCESSING,
  PKID_ACME_VALID,
  PKID_ACME_INVALID,
  PKID_ACME_DEACTIVATED,
} pkid_acme_status;

/* pkid_acme_status_name is the status's word in ACME's JSON. */
const char *pkid_acme_status_name(pkid_acme_status s);

typedef enum pkid_acme_chall_type {
  PKID_ACME_HTTP_01,
  PKID_ACME_TLS_ALPN_01,
  PKID_ACME_NUM_CHALL_TYPES,
} pkid_acme_chall_type;

const char *pkid_acme_chall_type_name(pkid_acme_chall_type t);

/* A problem: type and detail. */
typedef struct pkid_acme_failure {
  int set;
  pkid_acme_error type;
  char detail[256];
} pkid_acme_failure;

typedef struct pkid_acme_chall {
  pkid_acme_chall_type type;
  pkid_acme_status status; /* pending, processing, valid, invalid */
  char token[PKID_ACME_TOKEN_TEXT];
  int64_t validated; /* s; when valid */
  pkid_acme_failure error;
} pkid_acme_chall;

typedef struct pkid_acme_authz {
  char name[PKID_ACME_MAX_NAME + 1]; /* a dns identifier */
  pkid_acme_status status;           /* pending, valid, invalid, deactivated */
  pkid_acme_chall chall[PKID_ACME_NUM_CHALL_TYPES];
} pkid_acme_authz;

typedef struct pkid_acme_order {
  char id[PKID_ACME_ID_TEXT];
  char account[PKID_ACME_ACCOUNT_ID_MAX + 1];
  char service[256];
  pkid_acme_status status;
  int64_t created, expires; /* s */
  pkid_acme_authz *authz;   /* one per identifier, in the order's order */
  size_t num_authz;
  char replaces[256];
  pkid_acme_failure error;
  char *chain_pem; /* when valid: the certificate, then its CA chain */
  size_t chain_pem_len;
  pki_serial serial;
  struct pkid_acme_order *next; /* in its hash bucket */
} pkid_acme_order;

typedef struct pkid_acme_orders pkid_acme_orders;

pkid_acme_orders *pkid_acme_orders_new(size_t max_orders, size_t max_pending_per_account);
void pkid_acme_orders_free(pkid_acme_orders *o);

/* pkid_acme_order_new makes a pending order of |account| for |req|'s names,
 * each with its authorization and challenges. NULL with PKI_ERR_EXHAUSTED
 * when a limit is reached (rateLimited) or memory ran out. */
pkid_acme_order *pkid_acme_order_new(pkid_acme_orders *o, const char *account,
                                     const char *service, const pkid_acme_order_req *req,
                                     int64_t now, pki_err *err);

/* pkid_acme_order_find returns the order |id| (|len| characters), or NULL
 * when there is none or it has expired. */
pkid_acme_order *pkid_acme_order_find(pkid_acme_orders *o, const char *id, size_t len,
                                      int64_t now);

/* pkid_acme_order_update moves a pending order on from its
 * authorizations: all valid makes it ready, one invalid makes it (and it
 * stays) invalid, with that authorization's challenge error. */
void pkid_acme_order_update(pkid_acme_orders *o, pkid_acme_order *ord);

/* pkid_acme_order_finish ends an order: valid with its chain (owned from
 * then on), or invalid with |error|. Either is kept PKID_ACME_VALID_S. */
void pkid_acme_order_finish(pkid_acme_orders *o, pkid_acme_order *ord, char *chain_pem,
                            size_t chain_pem_len, const pkid_acme_failure *error, int64_t now);

/* pkid_acme_orders_each calls |fn| for each live order of |account|. */
void pkid_acme_orders_each(pkid_acme_orders *o, const char *account, int64_t now,
                           void (*fn)(void *ctx, const pkid_acme_order *ord), void *ctx);

/* pkid_acme_orders_sweep frees the orders that have expired; returns how
 * many are left. */
size_t pkid_acme_orders_sweep(pkid_acme_orders *o, int64_t now);

#endif /* PKID_SERVER_ACME_ORDERS_H */
