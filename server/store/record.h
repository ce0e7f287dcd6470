/* record.h: reading one journal record of the store back (the payload
 * layouts are in store.h).
 *
 * One parser for every reader: the replay at open, the key search of a
 * keyCompromise revocation, and the fleet's shipping of records into
 * PostgreSQL (server/fleet/). Strings and octets point into the record's
 * payload, valid while it is. Errors: 1/0 and a pki_err, as in lib/:
 * PKI_ERR_INVALID for a malformed payload, PKI_ERR_UNSUPPORTED for a
 * record of a newer pkid (a version or type this one does not know). */
#ifndef PKID_SERVER_STORE_RECORD_H
#define PKID_SERVER_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>

#include "lib/err.h"
#include "lib/journal.h"
#include "lib/serial.h"

/* Each record type's payload version (store.h). */
#define PKID_RECORD_VERSION 1 /* SERIAL_BLOCK, ISSUE, TOKEN */
#define PKID_REVOKE_VERSION 2
#define PKID_CRL_VERSION 1
/* REVOKE flags. */
#define PKID_REVOKE_HAS_KEY 1u
#define PKID_REVOKE_BY_KEY 2u

/* Octets of a payload, not NUL-terminated. */
typedef struct pkid_bytes {
  const uint8_t *data;
  size_t len;
} pkid_bytes;

typedef struct pkid_parsed_record {
  uint8_t type; /* pkid_record_type */
  uint8_t version;
  /* ISSUE, REVOKE */
  pki_serial serial;
  pkid_bytes identity; /* who asked, who revoked */
  /* ISSUE */
  pkid_bytes ca, service, cert;
  uint8_t usage; /* pki_usage */
  uint64_t not_before, not_after; /* s */
  const uint8_t *key_hash;        /* 32 octets; REVOKE: with PKID_REVOKE_HAS_KEY */
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
} pkid_parsed_record;

/* pkid_cbs_get_serial reads a u8-length-prefixed serial (1 to
 * PKI_SERIAL_MAX octets), as every record and the snapshot store it. */
int pkid_cbs_get_serial(CBS *cbs, pki_serial *out);

/* pkid_record_parse reads |r| into |out|. */
int pkid_record_parse(const pki_journal_record *r, pkid_parsed_record *out, pki_err *err);

#endif /* PKID_SERVER_STORE_RECORD_H */
