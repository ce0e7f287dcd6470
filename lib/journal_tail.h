/* journal_tail.h: following a journal that another thread (or process)
 * appends to: the records after a position, up to a limit, from the
 * segment files themselves.
 *
 * For readers that must not hold the journal's lock or its thread: pkid's
 * shipping of its records into the fleet's PostgreSQL (server/fleet/).
 * The reader keeps a position (segment, offset, the seq there and the
 * chain hash that record must link to), so it resumes without rereading
 * what it has, and every record it hands out is checked as the open path
 * checks it: CRC, seq and chain (lib/journal.h's parsers).
 *
 * The limit is the caller's: the appender's durable end (journal.h's
 * pki_journal_stats segment and segment_size, with its next seq), as a
 * position. Bytes past it may be a batch being written or one that a failed
 * append will cut back (journal.h, FAILED APPENDS), so they are never
 * read, and what is read is complete: anything that does not check is
 * damage. Errors: 1/0 and a pki_err, as in lib/: PKI_ERR_IO when a file
 * cannot be read, PKI_ERR_INVALID when what is there does not check
 * (naming the file and offset). */
#ifndef PKID_LIB_JOURNAL_TAIL_H
#define PKID_LIB_JOURNAL_TAIL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "lib/journal.h"

typedef struct pki_journal_pos {
  uint64_t segment;  /* 1, 2, ... */
  uint64_t offset;   /* of the next record in it; 0: its first record */
  uint64_t next_seq; /* the seq of that record */
  uint8_t chain[PKI_JOURNAL_HASH_LEN]; /* the hash it links to */
} pki_journal_pos;

/* pki_journal_pos_start sets |pos| at the first record of a journal. */
void pki_journal_pos_start(pki_journal_pos *pos);

/* pki_journal_durable_end sets |out| just after the last durable record
 * of |j|: the limit for readers. The journal's thread calls it, after an
 * append returned, and hands the position to readers under its own lock. */
void pki_journal_durable_end(const pki_journal *j, pki_journal_pos *out);

/* pki_journal_tail_read hands |fn| the records of the journal in |dir|
 * from |pos| up to |end| (the position after the last durable record), at
 * most |max| of them, and moves |pos| past each one |fn| accepted
 * (returned 1). |*out_n| is how many. */
int pki_journal_tail_read(const char *dir, pki_journal_pos *pos, const pki_journal_pos *end,
                          size_t max, pki_journal_replay_fn fn, void *ctx, size_t *out_n,
                          pki_err *err);

#endif /* PKID_LIB_JOURNAL_TAIL_H */
