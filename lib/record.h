/* record.h: the records pkid writes in its journal (lib/journal.h), and
 * one parser for every reader of them: pkid's replay at open, the key
 * search of a keyCompromise revocation, the fleet's shipping of records
 * into PostgreSQL (server/fleet/), the audit's queries and feeds
 * (lib/audit.h) and pkictl.
 *
 * Records. The journal's header gives each record its sequence number, its
 * type and its time: Unix milliseconds, when the committer wrote it. The
 * payloads (big-endian; "u8-len" is a string or octets after a one-octet
 * length, and so on) hold times in Unix seconds, as certificates do. Each
 * begins with its own version; replay reads every version ever written.
 *
 *   1 SERIAL_BLOCK  u8 version=1, u16 node, u64 first, u64 count
 *                   sequence numbers [first, first+count) of |node| are
 *                   reserved: written before any of them is used, so none is
 *                   used twice whatever crashes.
 *   2 ISSUE         u8 version=2, u8-len serial, u8-len CA name, u8-len
 *                   service, u16-len identity (who asked), u8 usage,
 *                   u64 notBefore (s), u64 notAfter (s), 32-octet SHA-256 of
 *                   the subject public key, u24-len certificate DER, u8-len
 *                   serial of the certificate it renews (empty: a new
 *                   issuance; a Renew call's is the client certificate it
 *                   came with). Version 1 stops after the certificate.
 *   3 REVOKE        u8 version=2, u8-len serial, u8 reason (CRLReason),
 *                   u64 revokedAt (s), u16-len identity (who revoked),
 *                   u64 invalidityDate (s, 0: not given), u8 flags, and with
 *                   flag 1 the 32-octet SHA-256 of the certificate's subject
 *                   public key: a keyCompromise revocation, after which that
 *                   key gets no certificate again. Flag 2: revoked because
 *                   another certificate of the key was (revoke_same_key).
 *                   Version 1 stops after the identity.
 *   4 TOKEN         u8 version=1, 32-octet id (SHA-256 of a bootstrap token):
 *                   the token is used; written in the same group commit as,
 *                   and just before, the ISSUE record it authorized
 *   5 CRL           u8 version=1, u8-len CA name, u64 cRLNumber, u64 the
 *                   base's cRLNumber (equal: this complete CRL is the new
 *                   base), u64 thisUpdate (s), u64 nextUpdate (s), u64 cut
 *                   (the CA's revocations it covers, crls.h), u32 entries of
 *                   the complete CRL, u32 of the delta, 32-octet SHA-256 of
 *                   each (complete, then delta): the CRLs of that number were
 *                   built; written before they are published, so that a
 *                   number is never used twice, and an audit can match any
 *                   CRL ever served to its record.
 *
 *   6 EVENT         u8 version=1, u8 kind (pki_event_kind), u8 outcome
 *                   (pki_event_outcome), u16-len identity (who), u8-len
 *                   service (or empty), u8-len serial (or empty), u32
 *                   count, u64 first (s), u64 last (s), u16-len detail
 *                   (UTF-8 text): an operation that changed
 *                   no certificate, for the audit trail. |count| is 1 but
 *                   for refusals, which are aggregated per identity, service
 *                   and reason over a window [first, last] so that a flood
 *                   of bad requests cannot flood the journal.
 *
 * Strings and octets a parse returns point into the record's payload,
 * valid while it is. Errors: 1/0 and a pki_err, as in lib/:
 * PKI_ERR_INVALID for a malformed payload, PKI_ERR_UNSUPPORTED for a
 * record of a newer pkid (a version or type this one does not know). */
#ifndef PKID_LIB_RECORD_H
#define PKID_LIB_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>

#include "lib/err.h"
#include "lib/journal.h"
#include "lib/serial.h"

typedef enum pki_record_type {
  PKI_REC_SERIAL_BLOCK = 1,
  PKI_REC_ISSUE = 2,
  PKI_REC_REVOKE = 3,
  PKI_REC_TOKEN = 4,
  PKI_REC_CRL = 5,
  PKI_REC_EVENT = 6,
} pki_record_type;

/* What an EVENT record tells. New kinds are added at the end; a reader
 * that meets a kind it does not know still reads the record (the fields
 * are the same for all) and names it by number. */
typedef enum pki_event_kind {
  PKI_EVENT_REFUSED = 1,     /* requests refused: detail is the status and why */
  PKI_EVENT_RELOAD = 2,      /* the catalogue reloaded, or a reload refused */
  PKI_EVENT_LB_ROTATION = 3, /* a load balancer put |serial| in service */
  PKI_EVENT_CEREMONY = 4,    /* an offline ceremony's log entry, imported */
  PKI_EVENT_EAB_CREATED = 5, /* an ACME external account binding key made */
  PKI_EVENT_EAB_USED = 6,    /* and used to bind an account */
  PKI_EVENT_ACME_ACCOUNT = 7, /* an ACME account changed (key, contact, deactivated) */
} pki_event_kind;

typedef enum pki_event_outcome {
  PKI_OUTCOME_OK = 0,
  PKI_OUTCOME_REFUSED = 1, /* the caller was told no */
  PKI_OUTCOME_FAILED = 2,  /* pkid could not do it */
} pki_event_outcome;

/* Each record type's payload version. */
#define PKI_RECORD_VERSION 1 /* SERIAL_BLOCK, TOKEN */
#define PKI_ISSUE_VERSION 2
#define PKI_REVOKE_VERSION 2
#define PKI_CRL_VERSION 1
#define PKI_EVENT_VERSION 1
/* REVOKE flags. */
#define PKI_REVOKE_HAS_KEY 1u
#define PKI_REVOKE_BY_KEY 2u

/* Octets of a payload, not NUL-terminated. */
typedef struct pki_bytes {
  const uint8_t *data;
  size_t len;
} pki_bytes;

typedef struct pki_parsed_record {
  uint8_t type; /* pki_record_type */
  uint8_t version;
  /* ISSUE, REVOKE */
  pki_serial serial;
  pki_bytes identity; /* who asked, who revoked */
  /* ISSUE */
  pki_bytes ca, service, cert;
  pki_serial renews; /* len 0: not a renewal */
  uint8_t usage; /* pki_usage */
  uint64_t not_before, not_after; /* s */
  const uint8_t *key_hash;        /* 32 octets; REVOKE: with PKI_REVOKE_HAS_KEY */
  /* REVOKE */
  uint8_t reason; /* CRLReason */
  uint64_t revoked_at, invalidity_date; /* s; 0: not given */
  uint8_t flags;
  /* TOKEN */
  const uint8_t *token_id; /* 32 octets */
  /* CRL (|ca| too) */
  uint64_t crl_number, crl_base, crl_this_update, crl_next_update, crl_cut;
  uint32_t crl_entries, crl_delta_entries;
  /* SERIAL_BLOCK */
  uint16_t block_node;
  uint64_t block_first, block_count;
  /* EVENT (|identity|, |service| and |serial| too; serial.len 0: none) */
  uint8_t event_kind;    /* pki_event_kind */
  uint8_t event_outcome; /* pki_event_outcome */
  uint32_t event_count;
  uint64_t event_first, event_last; /* s */
  pki_bytes detail;
} pki_parsed_record;

/* pki_cbs_get_serial reads a u8-length-prefixed serial (1 to
 * PKI_SERIAL_MAX octets), as every record and the snapshot store it. */
int pki_cbs_get_serial(CBS *cbs, pki_serial *out);

/* pki_record_parse reads |r| into |out|. */
int pki_record_parse(const pki_journal_record *r, pki_parsed_record *out, pki_err *err);

#endif /* PKID_LIB_RECORD_H */
