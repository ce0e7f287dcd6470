/* acme_state.h: the durable state of pkid's ACME server (RFC 8555): the
 * external account binding keys made (RFC 8555 7.3.4) and the accounts
 * bound with them, rebuilt from the journal's ACME EVENT records.
 *
 * Every change is an EVENT record (lib/record.h) journaled first and
 * applied here after, on the loop thread, by whoever submitted it; at
 * start the store's replay applies the journal's (and a snapshot's) the
 * same way. So one function, pkid_acme_state_apply, is the only way the
 * state changes, and a restart (or kill -9) rebuilds exactly what was
 * durable. The records, by kind:
 *
 *  - PKI_EVENT_EAB_CREATED: |service| the catalogue service the key is
 *    bound to; detail the key id (kid). The HMAC key itself is never
 *    journaled: it is derived from pkid's EAB master key and the kid
 *    (pkid_acme_eab_key).
 *  - PKI_EVENT_EAB_USED: an account created with that kid; |service| the
 *    service; detail JSON {"kid": K, "account": ID, "jwk": {...},
 *    "contact": [...]} (contact may be absent).
 *  - PKI_EVENT_ACME_ACCOUNT: an account changed; detail JSON
 *    {"account": ID} with any of "jwk" (a key change, RFC 8555 7.3.5),
 *    "contact" (an update, 7.3.2), "status": "deactivated" (7.3.6).
 *
 * A record that does not apply (an unknown kid, a kid used twice, an
 * account that does not exist) is refused by apply with PKI_ERR_INVALID:
 * the submitter checks before it journals, so in a replay this is damage.
 *
 * The state also keeps each record it applied, in order, so that a
 * snapshot (store.c) writes them and a load applies them again: accounts
 * change rarely, and one mechanism for both paths is worth the few bytes.
 *
 * Threads: the loop thread only. Errors: 1/0 with a pki_err. */
#ifndef PKID_SERVER_STORE_ACME_STATE_H
#define PKID_SERVER_STORE_ACME_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define PKID_ACME_KID_MAX 64
#define PKID_ACME_ACCOUNT_ID_MAX 32
#define PKID_ACME_EAB_MASTER_LEN 32
#define PKID_ACME_EAB_KEY_LEN 32

typedef struct pkid_acme_eab {
  char kid[PKID_ACME_KID_MAX + 1];
  char *service;
  char account[PKID_ACME_ACCOUNT_ID_MAX + 1]; /* "" until used */
  int64_t created;                           /* s, the record's time */
} pkid_acme_eab;

typedef struct pkid_acme_account {
  char id[PKID_ACME_ACCOUNT_ID_MAX + 1];
  char *service;
  char kid[PKID_ACME_KID_MAX + 1]; /* the EAB key that bound it */
  char *jwk;                       /* its public key, JSON text */
  uint8_t thumbprint[32];          /* RFC 7638, of |jwk| */
  char *contact;                   /* a JSON array's text, "[]" when none */
  int deactivated;
  int64_t created;
} pkid_acme_account;

typedef struct pkid_acme_state pkid_acme_state;

pkid_acme_state *pkid_acme_state_new(void);
void pkid_acme_state_free(pkid_acme_state *s);

/* pkid_acme_state_apply applies one journaled EVENT record of an ACME kind
 * (|kind|, |service|, |detail| of |len| octets, |time| its first time);
 * other kinds are ignored (1). */
int pkid_acme_state_apply(pkid_acme_state *s, int kind, const char *service,
                          const uint8_t *detail, size_t len, int64_t time, pki_err *err);

/* Lookups; NULL when there is none. Pointers stay valid until the next
 * apply. */
const pkid_acme_eab *pkid_acme_state_eab(const pkid_acme_state *s, const char *kid);
const pkid_acme_account *pkid_acme_state_account(const pkid_acme_state *s, const char *id);
const pkid_acme_account *pkid_acme_state_account_by_key(const pkid_acme_state *s,
                                                        const uint8_t thumbprint[32]);
size_t pkid_acme_state_num_accounts(const pkid_acme_state *s);

/* pkid_acme_state_each calls |fn| with each record applied, in order
 * (the snapshot's writer); it stops at the first |fn| that returns 0. */
int pkid_acme_state_each(const pkid_acme_state *s,
                         int (*fn)(void *ctx, int kind, const char *service,
                                   const uint8_t *detail, size_t len, int64_t time),
                         void *ctx);

/* pkid_acme_eab_key derives the HMAC-SHA256 key of |kid| (RFC 8555 7.3.4,
 * "MAC key") from pkid's master key: HMAC-SHA256(master, "pkid acme eab
 * v1" || 0x00 || kid). Neither is ever journaled or logged. */
void pkid_acme_eab_key(uint8_t out[PKID_ACME_EAB_KEY_LEN],
                       const uint8_t master[PKID_ACME_EAB_MASTER_LEN], const char *kid);

#endif /* PKID_SERVER_STORE_ACME_STATE_H */
