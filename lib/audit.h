/* audit.h: pkid's journal read as an audit trail: each record (lib/record.h)
 * as an event with named fields, one filter for every query, and one JSON
 * form for everyone who shows events (pkictl audit, the gRPC StreamAudit
 * method, the SIEM feed), so that the three never disagree.
 *
 * An event's JSON object, one line, fields in this order, those that do
 * not apply left out:
 *   seq        the record's sequence number in the journal
 *   time       when it was journaled, RFC 3339 UTC with milliseconds
 *   kind       issue, renew, revoke, token_used, crl, serial_block, refused,
 *              reload, lb_rotation, ceremony, eab_created, eab_used,
 *              acme_account
 *              (an event kind this pkid does not know: "event_N")
 *   outcome    ok, refused or failed
 *   identity   who: the caller's identity (issue, revoke, events)
 *   service    the catalogue service
 *   serial     the certificate's, lower-case hex
 *   ca         the issuing CA's catalogue name (issue, crl)
 *   ...        the kind's own fields (usage, not_after, reason, number,
 *              count, first, last, detail, ...)
 * Strings are escaped as JSON (RFC 8259 section 7); octets that are not
 * UTF-8 become \u00XX, so the line is always valid JSON whatever a
 * certificate or a hostile client put in a name.
 *
 * Errors: 1/0 and a pki_err, as in lib/. */
#ifndef PKID_LIB_AUDIT_H
#define PKID_LIB_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "lib/journal.h"
#include "lib/record.h"

/* pki_audit_kind_name is |rec|'s kind as the JSON form names it. |buf|
 * holds the name of an unknown event kind ("event_8"). */
const char *pki_audit_kind_name(const pki_parsed_record *rec, char *buf, size_t size);

/* pki_audit_outcome is "ok", "refused" or "failed". */
const char *pki_audit_outcome(const pki_parsed_record *rec);

/* pki_audit_filter selects events; every field set must match (NULL or 0:
 * any). */
typedef struct pki_audit_filter {
  const char *service;
  const char *identity;
  const char *serial; /* hex, any case, without separators */
  const char *kind;   /* as pki_audit_kind_name says it */
  uint64_t from_ms, to_ms; /* journal time, Unix ms: from <= t < to; 0: open */
} pki_audit_filter;

/* pki_audit_match reports whether record |r|, parsed as |p|, passes |f|. */
int pki_audit_match(const pki_audit_filter *f, const pki_journal_record *r,
                    const pki_parsed_record *p);

/* pki_audit_json writes |r|'s event, parsed as |p|, as one JSON object
 * without a newline, NUL-terminated, into |*out| (the caller frees it
 * with OPENSSL_free), its length in |*out_len|. Fails only when out of memory. */
int pki_audit_json(const pki_journal_record *r, const pki_parsed_record *p, char **out,
                   size_t *out_len, pki_err *err);

#endif /* PKID_LIB_AUDIT_H */
