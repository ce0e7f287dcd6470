/* journal.h: pkid's append-only, tamper-evident, durable record log.
 *
 * The journal is the store and the audit trail: every record is numbered,
 * checksummed and hash-chained to the one before it, and an append returns
 * only once its records are on disk. It does not interpret payloads; types
 * are small integers the caller defines. It has no threads and no locks:
 * one thread at a time uses a pki_journal (the server's journal thread);
 * only pki_journal_failed may be called from any thread.
 *
 * FILES. A journal is a directory holding
 *   NNNNNNNNNNNNNNNN.seg   segment N (16 lower-case hex digits), N = 1, 2, ...
 *   SSSSSSSSSSSSSSSS.snap  a snapshot covering records up to seq S
 *   NNNNNNNNNNNNNNNN.cut   a cut marker: segment N must be cut back to its
 *                          durable end (see FAILED APPENDS); rare
 * The process that has the journal open holds flock(LOCK_EX) on the
 * directory itself, so that two pkid processes never append to one journal.
 * All integers are big-endian (written with CBB, read with CBS).
 *
 * SEGMENT HEADER (68 bytes, at offset 0 of each segment):
 *    0  8  magic "PKIDJRN1"
 *    8  4  format version: 2; segments of version 1 (records without
 *          flags) are still read, and the first append after opening one
 *          starts a new segment
 *   12  4  reserved, 0
 *   16  8  segment number (equals the number in the file name)
 *   24  8  seq of the first record in this segment (or of the next record
 *          written, if it has none)
 *   32 32  chain hash the first record links to (all zero for segment 1)
 *   64  4  CRC32C of bytes 0..63
 * A segment is created whole (temporary file, fsync, rename, directory
 * fsync), so a bad segment header is always corruption, never a crash.
 *
 * RECORD (60 + payload length bytes, records follow the header back to back):
 *    0  4  payload length L, at most PKI_JOURNAL_MAX_PAYLOAD
 *    4  1  type, 1..255 (0 is refused: it is what a zeroed tail reads as)
 *    5  1  flags: bit 0 (version 2 only) marks the first record of an
 *          append; the other bits are 0
 *    6  2  reserved, 0
 *    8  8  seq: 1 for the first record of the journal, then +1 per record,
 *          continuing across segments
 *   16  8  time, given by the caller (pkid writes Unix milliseconds)
 *   24  L  payload
 *   24+L 32  chain hash = SHA-256(previous chain hash || bytes 0..23+L);
 *            the "previous chain hash" of record 1 is 32 zero bytes
 *   56+L  4  CRC32C of bytes 0..55+L
 * Changing, removing or reordering any record breaks every later chain
 * hash; the final chain hash therefore commits to the whole history.
 *
 * SNAPSHOT (80 + state length + 32 bytes):
 *    0  8  magic "PKIDSNP1"
 *    8  4  format version, 1
 *   12  4  reserved, 0
 *   16  8  seq S of the last record the state covers (0: none)
 *   24 32  chain hash after record S (zero if S is 0)
 *   56  8  segment number where replay resumes
 *   64  8  byte offset in that segment where replay resumes
 *   72  8  state length n
 *   80  n  the caller's state, opaque
 *   80+n 32  SHA-256 of bytes 0..79+n
 *
 * CUT MARKER (76 bytes), written atomically (pki_file_write_atomic):
 *    0  8  magic "PKIDCUT1"
 *    8  4  format version, 1
 *   12  4  reserved, 0
 *   16  8  segment number N (equals the number in the file name)
 *   24  8  durable end: the size of segment N that was last synced
 *   32  8  seq of the record after the last durable one
 *   40 32  chain hash after the last durable record
 *   72  4  CRC32C of bytes 0..71
 *
 * WRITTEN AHEAD. An fdatasync that grows the file must also commit the
 * file system's journal (the new size is metadata), and that costs more
 * than the data: on ext4 here, 160 against 95 us a sync, and twice the
 * tail. So an append that would grow the segment also writes, in the same
 * write, zeros after its records: enough for the next 1 MiB of records,
 * up to the segment's size. The appends after it overwrite those zeros
 * and leave the size alone, so only about one sync in a thousand pays for
 * metadata. A segment is cut back to its records (durably) before the
 * next one is started, and at close, so only the last segment ever has
 * zeros after its records; open cuts them as a torn tail, and a verify of
 * a journal in use reports them as such.
 *
 * FAILED APPENDS. The journal knows its durable end: the segment being
 * appended to and its size after the last successful fdatasync (or after
 * the segment's header was made durable); pki_journal_stats.segment and
 * .segment_size. An append that fails after writing has acknowledged
 * nothing, so it never leaves a record behind:
 *  - Its segment is cut back to the durable end (ftruncate, fdatasync),
 *    which also drops the unsynced bytes from the page cache.
 *  - A write that failed with ENOSPC or EDQUOT (disk or quota full), once
 *    cut back, is PKI_ERR_EXHAUSTED and the journal goes on: the next
 *    append may succeed when there is space.
 *  - Any other failed write, and every failed fdatasync (ENOSPC included:
 *    the kernel may have dropped the pages, and a second fdatasync could
 *    not tell), is PKI_ERR_IO and fails the journal for good
 *    (pki_journal_failed): it refuses every later append and snapshot.
 *  - If the cut fails too, the segment may still hold those records (and
 *    after a reboot, perhaps only some of their pages, a hole under any
 *    later record). The journal then writes a cut marker, so that the next
 *    open cuts there before anything else, and the message says whether
 *    that worked. Only this rare path writes one: appends cost nothing
 *    more, and a clean failure leaves no extra file.
 *  - Starting a new segment (a roll) writes only a temporary file until its
 *    rename; when that fails with EMFILE, ENFILE (no descriptors), ENOSPC
 *    or EDQUOT, nothing changed: the append is PKI_ERR_EXHAUSTED and the
 *    next one tries the roll again. Other roll failures fail the journal.
 *
 * RECOVERY RULES at pki_journal_open:
 *  - Only the last append of the last segment may be torn. An append over
 *    zeros written ahead is not atomic on a power loss: the disk may keep
 *    any of its pages and lose others, so whole records of it may follow
 *    its damage. A bad record (short header, length beyond the maximum,
 *    not enough bytes, CRC mismatch) at offset X of the last segment is a
 *    torn tail unless a whole record with a later seq that begins an
 *    append (flags bit 0) lies after X: an append is written only once the
 *    one before it is durable, so a later one shows the damage is in an
 *    acknowledged append. The file is then cut at X, fsynced, and the cut
 *    is counted in pki_journal_stats.truncated_bytes. Zeros written ahead
 *    are a torn tail by this rule. The price: damage to the last append of
 *    a journal, from the disk and not a crash, reads as a torn tail, and
 *    that append (if it was acknowledged) is cut; anything before it that
 *    is damaged still stops the open.
 *  - In a version 1 segment, which was only ever grown, a torn append is a
 *    short file: only its final record may be torn, and its CRC decides. A
 *    bad record at X is a torn tail when nothing but zero bytes follows
 *    the place where it claims to end, or when it claims to run past the
 *    end of the file and no valid record with the next seq appears after
 *    X.
 *  - Anything else is corruption and the open fails with PKI_ERR_INVALID,
 *    naming the segment file and byte offset: a bad record with data after
 *    it, a bad record in any segment but the last, a CRC-valid record with
 *    the wrong seq or chain hash, a missing segment, a bad segment header.
 *  - A cut marker for the last segment makes open read only the records
 *    before its durable end (all must be whole, and the last must have the
 *    marker's seq and chain hash, or the open fails with PKI_ERR_INVALID),
 *    cut the rest off (counted in truncated_bytes), sync, then remove the
 *    marker and sync the directory, before any append: a marker left behind
 *    would cut acknowledged records at the next open. A marker for any
 *    other segment, two markers, or a damaged one is corruption.
 *  - What a restart sees after a failed append: if the cut succeeded, only
 *    acknowledged records. If it failed but the marker was written, the
 *    same, once open has cut. If both failed (the disk is failing, or full
 *    for the marker's new file), the records of that one append may still
 *    be there: whole, and replayed although never acknowledged; or torn
 *    (the kernel wrote back only some of their pages), and cut as a torn
 *    tail, being the last append. The append's error gave the durable end
 *    (offset, and the last durable record): everything from there on was
 *    never acknowledged.
 *  - Records written by a process that died before its fdatasync returned
 *    may survive the crash; they were never acknowledged, and appear at
 *    replay.
 *
 * SNAPSHOTS keep restart time bounded: pki_journal_snapshot stores the
 * caller's state with the position it covers; the next open hands the
 * newest valid snapshot to opts->on_snapshot, then replays only the later
 * records, reading just the headers of the segments it covers. A snapshot
 * whose hash fails is passed over for the previous one (the newest two are
 * kept), then for a full replay. A snapshot whose hash is good but which
 * does not match the journal is corruption. Segments are never deleted:
 * they are the audit trail, and pki_journal_verify_dir checks the chain
 * from segment 1. */
#ifndef PKID_LIB_JOURNAL_H
#define PKID_LIB_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define PKI_JOURNAL_HASH_LEN 32
#define PKI_JOURNAL_MAX_PAYLOAD (1u << 20)
#define PKI_JOURNAL_SEG_HEADER_LEN 68
#define PKI_JOURNAL_REC_HEADER_LEN 24
#define PKI_JOURNAL_REC_OVERHEAD 60 /* header + chain hash + CRC */
#define PKI_JOURNAL_SNAP_OVERHEAD 112
#define PKI_JOURNAL_DEFAULT_SEGMENT_BYTES (64u << 20)

/* One record as read back. The pointers are valid during the callback. */
typedef struct pki_journal_record {
  uint64_t seq;
  uint64_t time;
  uint8_t type;
  const uint8_t *payload;
  size_t len;
  const uint8_t *chain; /* PKI_JOURNAL_HASH_LEN bytes: the hash after it */
  uint64_t segment;     /* where it is stored */
  uint64_t offset;
} pki_journal_record;

/* One record to append. */
typedef struct pki_journal_entry {
  uint8_t type; /* 1..255 */
  uint64_t time;
  const uint8_t *payload;
  size_t len; /* at most PKI_JOURNAL_MAX_PAYLOAD */
} pki_journal_entry;

/* A replay callback returns 1 to go on, or 0 having filled |err| to abort. */
typedef int (*pki_journal_replay_fn)(void *ctx, const pki_journal_record *rec,
                                     pki_err *err);

/* A snapshot callback receives the state saved by pki_journal_snapshot and
 * the seq it covers; it returns 1, or 0 having filled |err| to abort. */
typedef int (*pki_journal_snapshot_fn)(void *ctx, uint64_t seq,
                                       const uint8_t *state, size_t len,
                                       pki_err *err);

typedef struct pki_journal_options {
  /* A segment that has reached this size is closed before the next append
   * (a batch is never split). 0: PKI_JOURNAL_DEFAULT_SEGMENT_BYTES. */
  uint64_t segment_bytes;
  /* Called once at open, before any record, with the newest valid
   * snapshot. NULL: snapshots are ignored and every record is replayed. */
  pki_journal_snapshot_fn on_snapshot;
} pki_journal_options;

typedef struct pki_journal_stats {
  uint64_t segments;          /* segment files, the current one included */
  /* The durable end: the segment being appended to, and how many of its
   * bytes are durable records (the zeros written ahead follow them). */
  uint64_t segment;
  uint64_t segment_size;
  uint64_t replayed;          /* records handed to the replay callback */
  uint64_t snapshot_seq;      /* seq of the snapshot used at open, 0: none */
  uint64_t snapshots_skipped; /* snapshots with a bad hash passed over */
  uint64_t truncated_bytes;   /* torn tail cut at open */
  int truncated_zeros;        /* and it was only zeros written ahead: what a
                                 pkid that did not close leaves, no record */
  uint64_t records;           /* appended since open */
  uint64_t bytes;             /* appended since open */
  uint64_t syncs;             /* fdatasync calls made by appends */
  uint64_t last_fsync_ns;     /* duration of the latest one */
  uint64_t exhausted; /* appends refused with PKI_ERR_EXHAUSTED for want of
                         space or descriptors, the journal going on */
} pki_journal_stats;

typedef struct pki_journal pki_journal;

/* pki_journal_open opens (creating if missing) the journal in |dir|, takes
 * its lock, hands the newest valid snapshot to opts->on_snapshot, replays
 * every later record through |fn| (which may be NULL), and cuts a torn
 * tail or applies a cut marker (see RECOVERY RULES). |opts| may be NULL for
 * the defaults. A directory it creates is made durable (its parent is
 * synced). Corruption fails with PKI_ERR_INVALID; a journal another process
 * has open fails with PKI_ERR_EXISTS; running out of descriptors
 * (EMFILE, ENFILE) or space, PKI_ERR_EXHAUSTED. */
pki_journal *pki_journal_open(const char *dir, const pki_journal_options *opts,
                              pki_journal_replay_fn fn, void *ctx,
                              pki_err *err);

/* pki_journal_append writes |n| records with one write and one fdatasync,
 * giving them the next seqs, and returns 1 once they are durable. On 0
 * none of them is kept (see FAILED APPENDS):
 *  - PKI_ERR_INVALID: an entry with type 0 or an oversized payload; nothing
 *    was written.
 *  - PKI_ERR_EXHAUSTED: the disk or quota was full, or no descriptor was
 *    left to start the next segment, or out of memory; the journal goes on
 *    and a later append may succeed.
 *  - PKI_ERR_IO: a write, an fdatasync or a segment roll failed otherwise;
 *    the journal has failed (pki_journal_failed) and refuses every later
 *    append with PKI_ERR_IO. Close it; opening it again recovers, once the
 *    disk works. */
int pki_journal_append(pki_journal *j, const pki_journal_entry *entries,
                       size_t n, pki_err *err);

/* pki_journal_snapshot saves |state|, which must reflect every record
 * appended so far, atomically, then deletes snapshots older than the newest
 * two. */
int pki_journal_snapshot(pki_journal *j, const uint8_t *state, size_t len,
                         pki_err *err);

/* pki_journal_read_all hands every durable record, from segment 1 to the
 * durable end, to |fn|, checking CRCs, seqs and the chain as replay does.
 * It is the journal's own thread's (it reads what that thread appended):
 * a question about all of history, such as which certificates were ever
 * issued for one key, answered exactly and with nothing kept in memory.
 * Its cost grows with the journal; a caller that holds appends meanwhile
 * must say so. */
int pki_journal_read_all(pki_journal *j, pki_journal_replay_fn fn, void *ctx,
                         pki_err *err);

/* pki_journal_close releases the journal (NULL is allowed). Appended
 * records are already durable, so it has nothing to flush. */
void pki_journal_close(pki_journal *j);

/* pki_journal_failed returns 1 once an append has failed the journal for
 * good (PKI_ERR_IO above), 0 before: the server turns /readyz false and
 * stops. Unlike the rest of the API it may be called from any thread. */
int pki_journal_failed(const pki_journal *j);

/* The seq the next appended record will get. */
uint64_t pki_journal_next_seq(const pki_journal *j);

/* The chain hash after the last record (zero for an empty journal). */
void pki_journal_last_hash(const pki_journal *j,
                           uint8_t out[PKI_JOURNAL_HASH_LEN]);

void pki_journal_get_stats(const pki_journal *j, pki_journal_stats *out);

/* What pki_journal_verify_dir found. */
typedef struct pki_journal_verify_result {
  uint64_t segments;
  uint64_t records;
  uint64_t bytes;
  uint64_t by_type[256]; /* records of each type */
  uint64_t first_seq;    /* 0 when there are no records */
  uint64_t last_seq;
  uint8_t chain[PKI_JOURNAL_HASH_LEN]; /* after the last good record */
  uint64_t torn_bytes; /* what the next open would cut: a torn tail, or
                          what lies past a cut marker's durable end */
  int torn_zeros;      /* the torn tail is only zeros written ahead */
  int cut_marker;      /* a cut marker is waiting for the next open */
  uint64_t snapshots;      /* snapshots whose hash and chain match */
  uint64_t snapshots_bad;  /* snapshots with a bad hash (open skips them) */
  char bad_file[1024];     /* on failure: the file at fault, or "" */
  uint64_t bad_offset;     /* and the byte offset in it */
  /* pki_journal_verify_dir_at: the chain hash after record |mark_seq|, if
   * the journal holds it (|mark_found|), as a checkpoint names it. */
  uint64_t mark_seq;
  int mark_found;
  uint8_t mark_chain[PKI_JOURNAL_HASH_LEN];
} pki_journal_verify_result;

/* pki_journal_verify_dir reads every segment of |dir| from segment 1 and
 * checks every header, CRC, seq and chain link, and every snapshot against
 * the chain. It modifies nothing and takes no lock. A torn tail is reported
 * in |res| but is not a failure; with a cut marker, the last segment is read
 * only up to its durable end, as open would. The first problem fails with
 * PKI_ERR_INVALID, its file and offset in |res| and in the message. */
int pki_journal_verify_dir(const char *dir, pki_journal_verify_result *res,
                           pki_err *err);

/* pki_journal_verify_dir_at is pki_journal_verify_dir that also reports
 * the chain hash after record |mark_seq| (0: none), for a checkpoint
 * (lib/checkpoint.h). */
int pki_journal_verify_dir_at(const char *dir, uint64_t mark_seq,
                              pki_journal_verify_result *res, pki_err *err);

/* pki_journal_verify_dir_each is pki_journal_verify_dir_at that also hands
 * |fn| each record as it checks, in order (pkictl audit): what |fn| sees
 * has passed its CRC, seq and chain link. On a journal in use, the last
 * records may be of a batch not yet durable. |fn| returning 0 stops the
 * read with its error. */
int pki_journal_verify_dir_each(const char *dir, uint64_t mark_seq,
                                pki_journal_replay_fn fn, void *ctx,
                                pki_journal_verify_result *res, pki_err *err);

/* The parsers below work on memory only; the open path, the verifier and
 * the fuzzer share them. */

typedef struct pki_journal_seg_header {
  uint32_t version; /* 1 or 2 */
  uint64_t segment;
  uint64_t first_seq;
  uint8_t prev_chain[PKI_JOURNAL_HASH_LEN];
} pki_journal_seg_header;

/* pki_journal_parse_seg_header reads the header at the start of |data|. */
int pki_journal_parse_seg_header(const uint8_t *data, size_t len,
                                 pki_journal_seg_header *out, pki_err *err);

/* Where a scan of records is, in and out. */
typedef struct pki_journal_scan {
  uint64_t segment;    /* in: copied into each record */
  uint32_t version;    /* in: the segment's format (1 or 2; 0 is taken as
                          2); it decides which flags are valid and the
                          torn-tail rule */
  uint64_t offset;     /* in: where to start; out: end of the last good record */
  uint64_t next_seq;   /* in: seq expected there; out: the one after */
  uint8_t chain[PKI_JOURNAL_HASH_LEN]; /* in: hash to link to; out: last */
  uint64_t records;    /* out: good records read (added to) */
  uint64_t torn_bytes; /* out: torn tail after |offset| (only if allowed) */
  int torn_zeros;      /* out: that tail is all zeros (written ahead) */
  uint64_t bad_offset; /* out: where the problem is, on failure */
} pki_journal_scan;

/* pki_journal_parse_records reads the records of a segment held in |data|
 * from scan->offset to |len|, checking CRC, seq and chain, calling |fn|
 * (may be NULL) for each. With |allow_torn|, a torn tail ends the scan
 * successfully with its size in scan->torn_bytes; otherwise it fails too. */
int pki_journal_parse_records(const uint8_t *data, size_t len,
                              pki_journal_scan *scan, int allow_torn,
                              pki_journal_replay_fn fn, void *ctx,
                              pki_err *err);

typedef struct pki_journal_snapshot_info {
  uint64_t seq;
  uint8_t chain[PKI_JOURNAL_HASH_LEN];
  uint64_t segment; /* replay resumes here */
  uint64_t offset;
  const uint8_t *state; /* points into the parsed buffer */
  size_t len;
} pki_journal_snapshot_info;

/* pki_journal_parse_snapshot checks a snapshot file's layout and hash. */
int pki_journal_parse_snapshot(const uint8_t *data, size_t len,
                               pki_journal_snapshot_info *out, pki_err *err);

#endif /* PKID_LIB_JOURNAL_H */
