/* audit_stream.h: pki.v1.Pki/StreamAudit, the journal read as an audit
 * trail (lib/audit.h) and streamed to the identities the catalogue grants
 * the audit permission (the api authorizes: pkid_api_authorize_audit).
 *
 * A stream sends, in order, one AuditEvent per journal record from its
 * from_seq on that passes its filter, read from the segment files
 * (lib/journal_tail.h) up to the journal's durable end and never past it:
 * bytes beyond may be a batch being written or one a failed append will
 * cut back (lib/journal.h, FAILED APPENDS). Without follow it then ends
 * with OK. With follow it stays open and sends each record as it becomes
 * durable (pkid_audit_durable, from the store's on_durable), until the
 * client cancels, the call's deadline passes (max_stream_ms, as for
 * IssueStream: DEADLINE_EXCEEDED), or pkid drains: UNAVAILABLE, with the
 * seq to resume from in the message.
 *
 * Turns. The loop never reads the journal. Each turn of a stream scans at
 * most PKID_AUDIT_SCAN_RECORDS records on libuv's thread pool, keeping
 * at most PKID_AUDIT_CHUNK_EVENTS events or PKID_AUDIT_CHUNK_BYTES of
 * packed messages; the loop sends them, then waits until HTTP/2 has taken
 * all of them (rpc.h, on_sent: the client's flow-control window and the
 * connection allow) before the next turn. A client that does not read
 * holds one chunk. At most PKID_AUDIT_MAX_READS turns run at once, in the
 * order they were asked for, so that audit readers cannot take the pool
 * from the CRL builder.
 *
 * Where a stream starts. There is no seq index. Each segment's header
 * names its first seq (lib/journal.h), so a stream finds from_seq's
 * segment by reading the headers newest first (68 bytes each), then scans
 * that segment from its start, checking each record (CRC, seq, chain from
 * the header) and skipping those before from_seq. The cost before the
 * first event is at most one segment (journal_segment_bytes, 64 MiB by
 * default) read, a turn of PKID_AUDIT_SCAN_RECORDS at a time; from_seq 0
 * scans from segment 1. The chain is checked from that segment's header,
 * not from the journal's first record: pkid checked it whole at open, and
 * pkictl journal verify does.
 *
 * Threads: pkid_audit_durable on any thread (the committer); a pool thread
 * touches only the stream whose turn it runs, which the loop leaves alone
 * until the turn is back; everything else on the loop. */
#ifndef PKID_SERVER_API_AUDIT_STREAM_H
#define PKID_SERVER_API_AUDIT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "lib/audit.h"
#include "lib/err.h"
#include "lib/journal_tail.h"
#include "lib/record.h"
#include "lib/serial.h"
#include "server/rpc/rpc.h"

#define PKID_AUDIT_SCAN_RECORDS 4096
#define PKID_AUDIT_CHUNK_EVENTS 256
/* Half of what one connection may hold unsent (main.c's max_conn_output),
 * so that one audit stream does not pause the other calls beside it. */
#define PKID_AUDIT_CHUNK_BYTES (256u << 10)
#define PKID_AUDIT_MAX_READS 2
#define PKID_AUDIT_MAX_STREAMS 64 /* open at once; more: RESOURCE_EXHAUSTED */

typedef struct pkid_audit pkid_audit;

/* pkid_audit_new serves the journal in |dir| (copied), whose durable end
 * is |end| now, on |loop|. */
pkid_audit *pkid_audit_new(uv_loop_t *loop, const char *dir, const pki_journal_pos *end,
                           pki_err *err);

/* pkid_audit_durable records a new durable end (any thread: the store's
 * on_durable) and wakes the streams that follow. */
void pkid_audit_durable(pkid_audit *a, const pki_journal_pos *end);

/* pkid_audit_drain ends the streams that follow, each at its next turn
 * (UNAVAILABLE); those that do not follow finish. */
void pkid_audit_drain(pkid_audit *a);

/* pkid_audit_free frees |a| once the loop has closed every handle and
 * run every callback (after uv_loop_close's run), when no call is left. */
void pkid_audit_free(pkid_audit *a);

/* The method's handlers (api.c's table), with the pkid_api as |ctx|: the
 * request starts a stream, and on_sent runs its next turn. */
void pkid_audit_on_request(void *ctx, pkid_call *call, const uint8_t *msg, size_t len);
void pkid_audit_on_sent(void *ctx, pkid_call *call);

/* --- the pure parts, for tests -------------------------------------------------- */

/* pkid_audit_query: what one StreamAuditRequest asks for. */
typedef struct pkid_audit_query {
  uint64_t from_seq; /* 1 or more */
  int follow;
  char service[256];
  char identity[1024];
  char serial[2 * PKI_SERIAL_MAX + 1]; /* as pki_serial_to_hex writes it */
  char kind[32];
  pki_audit_filter filter; /* points into the above; NULL for a field not given */
} pkid_audit_query;

/* pkid_audit_query_init checks a request's filter (each field "" for
 * any): a serial must be hex (pki_serial_from_hex), a kind one that
 * pki_audit_kind_name says, and no field longer than any record's can be.
 * PKI_ERR_INVALID naming the field otherwise. */
int pkid_audit_query_init(pkid_audit_query *q, uint64_t from_seq, int follow,
                          const char *service, const char *identity, const char *serial,
                          const char *kind, pki_err *err);

/* pkid_audit_kind_known: |name| is a kind pki_audit_kind_name gives. */
int pkid_audit_kind_known(const char *name);

/* pkid_audit_event_pack packs record |r|, parsed as |p|, as an AuditEvent
 * whose json is pki_audit_json's, into |*out| (malloc'd; the caller frees
 * it), its length in |*out_len|. The string fields are UTF-8 whatever the
 * record holds: octets that are not become U+FFFD (the json field has them
 * escaped). Fails only when out of memory. */
int pkid_audit_event_pack(const pki_journal_record *r, const pki_parsed_record *p, uint8_t **out,
                          size_t *out_len, pki_err *err);

/* pkid_audit_seek sets |pos| at the start of the segment of the journal in
 * |dir| that holds |from_seq| (the last whose first seq is at most it),
 * among the segments up to |end|'s. */
int pkid_audit_seek(const char *dir, uint64_t from_seq, const pki_journal_pos *end,
                    pki_journal_pos *pos, pki_err *err);

#endif /* PKID_SERVER_API_AUDIT_STREAM_H */
