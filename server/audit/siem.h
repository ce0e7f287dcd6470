/* siem.h: the SIEM feed: every record of pkid's journal, as an event
 * (lib/audit.h's JSON form), streamed to a syslog collector as RFC 5424
 * messages over TLS (RFC 5425), at least once and in journal order.
 *
 * WHO AND WHICH THREAD. pkid_siem_start (main, after the store opened)
 * loads the cursor and starts one thread, the feed's. The committer thread
 * hands it the journal's durable end after each durable append
 * (pkid_siem_durable, from main.c's on_durable: a copy under the feed's
 * mutex and a signal, as the fleet's shipper has it). The feed thread
 * reads only the segment files, up to that end (lib/journal_tail.h: bytes
 * past it are never read, journal.h FAILED APPENDS), and its own socket:
 * it never holds the journal, a lock of the pipeline or the loop, so a
 * collector that is down, slow or refusing costs issuance nothing; the
 * feed only falls behind (pkid_siem_lag_records) and catches up later.
 *
 * THE MESSAGE (RFC 5424 section 6), one per journal record:
 *   <PRI>1 TIMESTAMP HOSTNAME pkid PROCID MSGID [pkid@32473 seq="N" node="K"] MSG
 *   PRI        facility authpriv (10) * 8 + severity: notice (5) for an
 *              outcome "ok", warning (4) for "refused" and "failed"
 *   TIMESTAMP  the record's journal time, UTC, with milliseconds
 *   HOSTNAME   gethostname(2), or the configured name
 *   PROCID     pkid's pid; MSGID the event kind (issue, revoke, refused, ...)
 *   SD         seq: the journal sequence number, node: this node's id;
 *              "pkid@32473" is an SD-ID of the enterprise form (section
 *              7.2.2) with 32473, the documentation PEN of RFC 5612, as a
 *              placeholder until pkid has its own number
 *   MSG        the event's JSON object (lib/audit.h), which carries seq
 *              too; preceded by a UTF-8 BOM (section 6.4) only when it
 *              holds a non-ASCII octet, plain ASCII (MSG-ANY) otherwise
 * Each message is framed by octet counting, "LEN SP MESSAGE" (RFC 5425
 * section 4.3, RFC 6587 section 3.4.1), so a MSG may hold any octet.
 *
 * TLS. TLS 1.2 or 1.3 (BoringSSL); the collector's certificate must chain
 * to the configured CA file and carry the configured name (a DNS name, or
 * an IP address when the name is one); pkid presents the client
 * certificate (with its chain, from one PEM file) and key it is given,
 * from the external CA. A collector that does not verify gets nothing, and
 * the log says why.
 *
 * THE CURSOR, JOURNAL/siem-cursor, is the position after the last record
 * confirmed delivered: segment, offset, the next seq and the chain hash
 * the next record links to (pki_journal_pos), written atomically
 * (lib/file.h) as six lines of text whose last is a CRC-32C of the rest:
 *   pkid-siem-cursor 1
 *   segment 1
 *   offset 4242
 *   next_seq 57
 *   chain <64 lower-case hex digits>
 *   crc32c <8 lower-case hex digits>
 * At start: no file, the feed starts at the journal's first record. A file
 * that does not parse, or that does not match the journal (the record at
 * its position does not carry its seq or link to its chain hash, or it
 * lies past the journal's end: another journal, or one restored from a
 * backup), is not guessed at: pkid logs siem_cursor_mismatch and starts
 * from the first record again, for a SIEM can drop duplicates by seq but
 * cannot recover what was skipped.
 *
 * CONFIRMATION. Syslog over TLS has no application acknowledgement, so
 * pkid decides from TCP what the collector has: records written to the
 * socket count as delivered, and the cursor moves past them, when
 *   1. the socket's send queue is empty (ioctl SIOCOUTQ: no octet unsent
 *      or unacknowledged): the collector's kernel has every octet, and
 *   2. the connection is still healthy CONFIRM_MS (500 ms) later: no
 *      close_notify, reset or error seen since. A collector that stops
 *      (or dies) with messages it had not read from its socket resets the
 *      connection, which this catches; one that read them goes on to
 *      write them (rsyslog's queue drains at shutdown).
 * What the rule cannot see is a collector that acknowledged and read
 * octets and then lost them inside itself, after the moment: a collector
 * that must never lose anything needs disk-assisted queues, or RELP,
 * which RFC 5425 transport does not offer. On every new connection, and
 * after a restart (clean or kill -9), the feed sends again from the
 * cursor, so records written but not confirmed are sent twice. DELIVERY
 * IS AT LEAST ONCE: a duplicate carries the same seq (in the SD and in the
 * JSON), by which the SIEM, or a test, recognises it; within a
 * connection, messages are in journal order without gaps.
 *
 * RECONNECTS wait with exponential backoff, 250 ms doubling to 5 s;
 * failures are logged once when they begin and then at most once a
 * minute while they last. At stop (pkid_siem_stop, after the last commit)
 * the feed sends what is durable and waits for its confirmation, 3 s at
 * most, then saves the cursor and closes with close_notify.
 *
 * Errors: 1/0 and a pki_err, as in lib/. */
#ifndef PKID_SERVER_AUDIT_SIEM_H
#define PKID_SERVER_AUDIT_SIEM_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "lib/journal.h"
#include "lib/journal_tail.h"

#define PKID_SIEM_CURSOR_FILE "siem-cursor"
#define PKID_SIEM_CURSOR_MAX 512 /* octets of a cursor file */

typedef struct pkid_siem_options {
  const char *collector; /* HOST:PORT, an address (lib/hostport.h) */
  const char *ca_file;   /* PEM: the CAs the collector's certificate chains to */
  const char *name;      /* the collector certificate's name; NULL: its HOST */
  const char *cert_file; /* PEM: pkid's client certificate, then its chain */
  const char *key_file;  /* PEM: its private key */
  const char *hostname;  /* HOSTNAME of the messages; NULL: gethostname */
  const char *journal_dir;
  uint16_t node;
} pkid_siem_options;

typedef struct pkid_siem pkid_siem;

/* pkid_siem_check reads the options' files as the feed will (the CA file,
 * the certificate and its key, which must match) and parses the
 * collector's address: every mistake is an error at start, naming the
 * file or the flag's value. pkid_siem_start calls it. */
int pkid_siem_check(const pkid_siem_options *o, pki_err *err);

/* pkid_siem_start loads the cursor from |o->journal_dir|, checks it
 * against the journal up to |end| (its durable end now) and starts the
 * feed's thread. Strings are copied. */
pkid_siem *pkid_siem_start(const pkid_siem_options *o, const pki_journal_pos *end,
                           pki_err *err);

/* pkid_siem_durable hands the feed the journal's new durable end (the
 * store's on_durable, from the committer thread). */
void pkid_siem_durable(pkid_siem *s, const pki_journal_pos *end);

/* pkid_siem_stop drains (bounded, see above), stops the thread and frees
 * |s| (NULL is allowed). */
void pkid_siem_stop(pkid_siem *s);

/* The parts below work on memory only; the feed, its tests and the fuzzer
 * share them. */

/* pkid_siem_cursor_format writes |pos| as a cursor file into |out| (at
 * least PKID_SIEM_CURSOR_MAX octets) and returns its length. */
size_t pkid_siem_cursor_format(char *out, const pki_journal_pos *pos);

/* pkid_siem_cursor_parse reads a cursor file; PKI_ERR_INVALID for one that
 * is not exactly what pkid_siem_cursor_format writes (CRC included). */
int pkid_siem_cursor_parse(const uint8_t *data, size_t len, pki_journal_pos *out, pki_err *err);

/* pkid_siem_format_record appends |r|'s message, framed ("LEN SP MSG"),
 * to the buffer |*buf| (|*len| used of |*cap|, grown with realloc). A
 * record that does not parse (a newer pkid's type) is still sent, its
 * JSON saying only seq, time and "kind":"record_T". */
int pkid_siem_format_record(uint8_t **buf, size_t *len, size_t *cap,
                            const pki_journal_record *r, const char *hostname, long pid,
                            uint16_t node, pki_err *err);

#endif /* PKID_SERVER_AUDIT_SIEM_H */
