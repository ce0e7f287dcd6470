#include "lib/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/crc32c.h"
#include "lib/file.h"

#define SEG_MAGIC "PKIDJRN1"
#define SNAP_MAGIC "PKIDSNP1"
#define CUT_MAGIC "PKIDCUT1"
#define CUT_LEN 76
/* Snapshots and cut markers are at version 1. Segments are at 2 (records
 * may carry FLAG_FIRST); version 1 segments are still read. */
#define FORMAT_VERSION 1
#define SEG_VERSION 2
/* Bit 0 of a record's flags (segment version 2): the first record of an
 * append. It is what bounds a torn tail in space written ahead. */
#define FLAG_FIRST 0x01
/* Zeros written ahead of the records (see WRITTEN AHEAD in journal.h). */
#define ZERO_AHEAD ((size_t)1 << 20)
#define SNAP_HEADER_LEN 80
/* Snapshots are read whole into memory; this only bounds a damaged length. */
#define MAX_SNAPSHOT_FILE ((size_t)1 << 36)
#define KEEP_SNAPSHOTS 2
/* One batch is one buffer and one write; this bounds the buffer. */
#define MAX_BATCH_BYTES ((size_t)1 << 30)

typedef unsigned long long ull; /* for printf of uint64_t without PRIu64 */

struct pki_journal {
  char *dir;
  int dir_fd; /* holds the flock on the directory */
  int fd;     /* the segment being appended to */
  uint64_t segment_bytes;
  /* The durable end: segment |seg| holds exactly |seg_size| bytes that an
   * fdatasync has made durable, ending with record next_seq - 1, whose
   * chain hash is |chain|. They move only once an append's sync succeeded
   * (or a new segment's header is durable), so they are also where a failed
   * append cuts the segment back to. */
  uint64_t seg;
  uint64_t seg_size;
  uint64_t next_seq;
  uint8_t chain[PKI_JOURNAL_HASH_LEN];
  /* Written ahead (journal.h): bytes seg_size..zeroed of the segment are
   * zeros that an fdatasync has made durable, for appends to overwrite
   * without changing the file's size. |no_zero_ahead|: the disk was full
   * when zeros were written; until the next segment, appends write only
   * their records. |seg_version|: the format of segment |seg|. */
  uint64_t zeroed;
  int no_zero_ahead;
  uint32_t seg_version;
  uint8_t *buf; /* reused by every append: no allocation per record */
  size_t buf_cap;
  /* Sticky: set when an append failed in a way that cannot be retried.
   * Atomic so that pki_journal_failed may be asked from any thread; the
   * message in |failure| is written before the flag is set (release). */
  atomic_int failed;
  char failure[sizeof(((pki_err *)0)->msg)];
  pki_journal_stats stats;
};

static const uint8_t zero_hash[PKI_JOURNAL_HASH_LEN];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* is_exhaustion tells "not now" from "broken": the disk or the quota is
 * full (ENOSPC, EDQUOT: write(2)), or the process or the system has no
 * descriptor left (EMFILE, ENFILE: open(2)). An operation that failed so
 * and left nothing behind may be tried again once space or descriptors are
 * back, so it is PKI_ERR_EXHAUSTED, which callers retry. */
static int is_exhaustion(int e) {
  return e == ENOSPC || e == EDQUOT || e == EMFILE || e == ENFILE || e == ENOMEM;
}

static pki_err_code io_code(int e) {
  return is_exhaustion(e) ? PKI_ERR_EXHAUSTED : PKI_ERR_IO;
}

/* ---- memory-only parsers ---------------------------------------------- */

static void encode_seg_header(uint8_t out[PKI_JOURNAL_SEG_HEADER_LEN],
                              uint64_t segment, uint64_t first_seq,
                              const uint8_t chain[PKI_JOURNAL_HASH_LEN]) {
  CBB cbb;
  /* Cannot fail: the buffer is exactly the header's size. */
  CBB_init_fixed(&cbb, out, PKI_JOURNAL_SEG_HEADER_LEN);
  CBB_add_bytes(&cbb, (const uint8_t *)SEG_MAGIC, 8);
  CBB_add_u32(&cbb, SEG_VERSION);
  CBB_add_u32(&cbb, 0);
  CBB_add_u64(&cbb, segment);
  CBB_add_u64(&cbb, first_seq);
  CBB_add_bytes(&cbb, chain, PKI_JOURNAL_HASH_LEN);
  CBB_add_u32(&cbb, pki_crc32c(0, out, 64));
  CBB_cleanup(&cbb);
}

int pki_journal_parse_seg_header(const uint8_t *data, size_t len,
                                 pki_journal_seg_header *out, pki_err *err) {
  if (len < PKI_JOURNAL_SEG_HEADER_LEN) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "offset 0: segment header is cut short (%zu of %d bytes)", len,
            PKI_JOURNAL_SEG_HEADER_LEN);
    return 0;
  }
  CBS cbs, magic, chain;
  uint32_t version, reserved, crc;
  CBS_init(&cbs, data, PKI_JOURNAL_SEG_HEADER_LEN);
  if (!CBS_get_bytes(&cbs, &magic, 8) || !CBS_get_u32(&cbs, &version) ||
      !CBS_get_u32(&cbs, &reserved) || !CBS_get_u64(&cbs, &out->segment) ||
      !CBS_get_u64(&cbs, &out->first_seq) ||
      !CBS_get_bytes(&cbs, &chain, PKI_JOURNAL_HASH_LEN) ||
      !CBS_get_u32(&cbs, &crc)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "offset 0: cannot read segment header");
    return 0;
  }
  if (memcmp(CBS_data(&magic), SEG_MAGIC, 8) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "offset 0: not a pkid journal segment (bad magic)");
    return 0;
  }
  if (crc != pki_crc32c(0, data, 64)) {
    PKI_ERR(err, PKI_ERR_INVALID, "offset 64: segment header CRC mismatch");
    return 0;
  }
  if ((version != 1 && version != SEG_VERSION) || reserved != 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "offset 8: unsupported segment format version %u", version);
    return 0;
  }
  if (out->segment == 0 || out->first_seq == 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "offset 16: segment header has segment or seq 0");
    return 0;
  }
  memcpy(out->prev_chain, CBS_data(&chain), PKI_JOURNAL_HASH_LEN);
  out->version = version;
  return 1;
}

enum rec_status { REC_OK, REC_SHORT_HEADER, REC_TOO_LONG, REC_SHORT, REC_BAD_CRC };

static const char *rec_status_text(enum rec_status st) {
  switch (st) {
    case REC_SHORT_HEADER: return "record header cut short";
    case REC_TOO_LONG: return "record length beyond the maximum";
    case REC_SHORT: return "record runs past the end of the segment";
    case REC_BAD_CRC: return "record CRC mismatch";
    default: return "record is valid";
  }
}

typedef struct raw_record {
  pki_journal_record rec;
  uint8_t flags;
  uint16_t reserved;
  size_t size; /* whole record, as its length field claims */
} raw_record;

/* parse_one reads the record at |p| as far as its CRC: it says whether the
 * bytes are a whole record, not whether it fits the journal. */
static enum rec_status parse_one(const uint8_t *p, size_t rem, raw_record *r) {
  r->size = 0;
  if (rem < PKI_JOURNAL_REC_HEADER_LEN) return REC_SHORT_HEADER;
  CBS cbs;
  uint32_t len, crc;
  CBS_init(&cbs, p, PKI_JOURNAL_REC_HEADER_LEN);
  if (!CBS_get_u32(&cbs, &len) || !CBS_get_u8(&cbs, &r->rec.type) ||
      !CBS_get_u8(&cbs, &r->flags) || !CBS_get_u16(&cbs, &r->reserved) ||
      !CBS_get_u64(&cbs, &r->rec.seq) || !CBS_get_u64(&cbs, &r->rec.time)) {
    return REC_SHORT_HEADER;
  }
  if (len > PKI_JOURNAL_MAX_PAYLOAD) return REC_TOO_LONG;
  r->size = (size_t)PKI_JOURNAL_REC_OVERHEAD + len;
  if (r->size > rem) return REC_SHORT;
  size_t crc_at = r->size - 4;
  CBS_init(&cbs, p + crc_at, 4);
  if (!CBS_get_u32(&cbs, &crc)) return REC_SHORT;
  if (crc != pki_crc32c(0, p, crc_at)) return REC_BAD_CRC;
  r->rec.payload = p + PKI_JOURNAL_REC_HEADER_LEN;
  r->rec.len = len;
  r->rec.chain = p + PKI_JOURNAL_REC_HEADER_LEN + len;
  return REC_OK;
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* find_record looks for a whole record at or after |from| whose seq lies
 * in [lo, hi] and, with |first|, that begins an append: the sign that a
 * bad record is damage in the middle, not a torn end. Only offsets whose
 * seq field is in range are parsed, so a run of zeros costs one compare a
 * byte. */
static int find_record(const uint8_t *data, size_t len, size_t from,
                       uint64_t lo, uint64_t hi, int first) {
  for (size_t p = from; p + PKI_JOURNAL_REC_OVERHEAD <= len; p++) {
    uint64_t seq = get_u64(data + p + 8);
    if (seq < lo || seq > hi) continue;
    raw_record r;
    if (parse_one(data + p, len - p, &r) == REC_OK &&
        (!first || (r.flags & FLAG_FIRST))) {
      return 1;
    }
  }
  return 0;
}

/* is_torn applies the torn-tail rule of journal.h to a bad record at |off|
 * of a segment of format |version|. */
static int is_torn(const uint8_t *data, size_t len, size_t off,
                   enum rec_status st, const raw_record *r, uint64_t next_seq,
                   uint32_t version) {
  if (version != 1) {
    /* Written ahead, the last append overwrites zeros, and a power loss
     * may keep any of its pages and lose others: whole records of it may
     * follow the damage. Only the first record of a later append shows
     * that the damage is in one that was acknowledged. A record is at
     * least REC_OVERHEAD bytes, which bounds the seqs worth looking for. */
    uint64_t most = (len - off) / PKI_JOURNAL_REC_OVERHEAD;
    return !find_record(data, len, off + 1, next_seq + 1, next_seq + most, 1);
  }
  /* Version 1 segments only grew, so a torn append is a short file: after
   * a bad CRC, nothing but zeros. */
  if (st == REC_BAD_CRC) {
    for (size_t i = off + r->size; i < len; i++) {
      if (data[i] != 0) return 0;
    }
  }
  /* A damaged length can make a middle record seem to end at (or run past)
   * the end of the file; the record after it, intact, gives that away. */
  return !find_record(data, len, off + 1, next_seq + 1, next_seq + 1, 0);
}

int pki_journal_parse_records(const uint8_t *data, size_t len,
                              pki_journal_scan *scan, int allow_torn,
                              pki_journal_replay_fn fn, void *ctx,
                              pki_err *err) {
  if (scan->offset > len) {
    scan->bad_offset = len;
    PKI_ERR(err, PKI_ERR_INVALID, "offset %llu: beyond the end of the segment",
            (ull)scan->offset);
    return 0;
  }
  size_t off = (size_t)scan->offset;
  while (off < len) {
    raw_record r;
    memset(&r, 0, sizeof(r));
    enum rec_status st = parse_one(data + off, len - off, &r);
    if (st != REC_OK) {
      if (allow_torn &&
          is_torn(data, len, off, st, &r, scan->next_seq, scan->version)) {
        scan->torn_bytes = len - off;
        scan->torn_zeros = 1;
        for (size_t i = off; i < len && scan->torn_zeros; i++) {
          scan->torn_zeros = data[i] == 0;
        }
        break;
      }
      scan->bad_offset = off;
      PKI_ERR(err, PKI_ERR_INVALID, "offset %zu: %s (seq %llu expected)%s",
              off, rec_status_text(st), (ull)scan->next_seq,
              allow_torn ? ", and more data after it: not a torn tail" : "");
      return 0;
    }
    scan->bad_offset = off;
    uint8_t allowed = scan->version == 1 ? 0 : FLAG_FIRST;
    if (r.rec.type == 0 || (r.flags & ~allowed) != 0 || r.reserved != 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "offset %zu: record seq %llu has type 0 or reserved bits set",
              off, (ull)r.rec.seq);
      return 0;
    }
    if (r.rec.seq != scan->next_seq) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "offset %zu: record has seq %llu where %llu was expected", off,
              (ull)r.rec.seq, (ull)scan->next_seq);
      return 0;
    }
    uint8_t h[PKI_JOURNAL_HASH_LEN];
    SHA256_CTX sha;
    SHA256_Init(&sha);
    SHA256_Update(&sha, scan->chain, PKI_JOURNAL_HASH_LEN);
    SHA256_Update(&sha, data + off, PKI_JOURNAL_REC_HEADER_LEN + r.rec.len);
    SHA256_Final(h, &sha);
    if (memcmp(h, r.rec.chain, PKI_JOURNAL_HASH_LEN) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "offset %zu: record seq %llu: chain hash does not link to the "
              "record before it (history was altered)", off, (ull)r.rec.seq);
      return 0;
    }
    memcpy(scan->chain, h, PKI_JOURNAL_HASH_LEN);
    scan->next_seq++;
    scan->records++;
    r.rec.segment = scan->segment;
    r.rec.offset = off;
    off += r.size;
    scan->offset = off;
    if (fn != NULL && !fn(ctx, &r.rec, err)) return 0;
  }
  scan->offset = off;
  return 1;
}

int pki_journal_parse_snapshot(const uint8_t *data, size_t len,
                               pki_journal_snapshot_info *out, pki_err *err) {
  if (len < PKI_JOURNAL_SNAP_OVERHEAD) {
    PKI_ERR(err, PKI_ERR_INVALID, "snapshot is cut short (%zu bytes)", len);
    return 0;
  }
  CBS cbs, magic, chain;
  uint32_t version, reserved;
  uint64_t state_len;
  CBS_init(&cbs, data, SNAP_HEADER_LEN);
  if (!CBS_get_bytes(&cbs, &magic, 8) || !CBS_get_u32(&cbs, &version) ||
      !CBS_get_u32(&cbs, &reserved) || !CBS_get_u64(&cbs, &out->seq) ||
      !CBS_get_bytes(&cbs, &chain, PKI_JOURNAL_HASH_LEN) ||
      !CBS_get_u64(&cbs, &out->segment) || !CBS_get_u64(&cbs, &out->offset) ||
      !CBS_get_u64(&cbs, &state_len)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot read snapshot header");
    return 0;
  }
  if (memcmp(CBS_data(&magic), SNAP_MAGIC, 8) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a pkid journal snapshot (bad magic)");
    return 0;
  }
  if (state_len != len - PKI_JOURNAL_SNAP_OVERHEAD) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "snapshot length field does not match its size");
    return 0;
  }
  size_t body = len - PKI_JOURNAL_HASH_LEN;
  uint8_t h[PKI_JOURNAL_HASH_LEN];
  SHA256(data, body, h);
  if (memcmp(h, data + body, PKI_JOURNAL_HASH_LEN) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "snapshot hash mismatch");
    return 0;
  }
  if (version != FORMAT_VERSION || reserved != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "unsupported snapshot version %u", version);
    return 0;
  }
  if (out->segment == 0 || out->offset < PKI_JOURNAL_SEG_HEADER_LEN) {
    PKI_ERR(err, PKI_ERR_INVALID, "snapshot resume position is impossible");
    return 0;
  }
  memcpy(out->chain, CBS_data(&chain), PKI_JOURNAL_HASH_LEN);
  out->state = data + SNAP_HEADER_LEN;
  out->len = (size_t)state_len;
  return 1;
}

/* A cut marker (see journal.h) names the durable end of the last segment,
 * for the next open to cut back to when a failed append could not. */
typedef struct cut_marker {
  uint64_t segment;
  uint64_t offset;   /* the segment's durable size */
  uint64_t next_seq; /* the seq after the last durable record */
  uint8_t chain[PKI_JOURNAL_HASH_LEN]; /* the chain hash after it */
} cut_marker;

static void encode_cut(uint8_t out[CUT_LEN], const cut_marker *c) {
  CBB cbb;
  /* Cannot fail: the buffer is exactly the marker's size. */
  CBB_init_fixed(&cbb, out, CUT_LEN);
  CBB_add_bytes(&cbb, (const uint8_t *)CUT_MAGIC, 8);
  CBB_add_u32(&cbb, FORMAT_VERSION);
  CBB_add_u32(&cbb, 0);
  CBB_add_u64(&cbb, c->segment);
  CBB_add_u64(&cbb, c->offset);
  CBB_add_u64(&cbb, c->next_seq);
  CBB_add_bytes(&cbb, c->chain, PKI_JOURNAL_HASH_LEN);
  CBB_add_u32(&cbb, pki_crc32c(0, out, CUT_LEN - 4));
  CBB_cleanup(&cbb);
}

/* parse_cut checks a cut marker's layout and CRC. It is written whole
 * (pki_file_write_atomic), so any damage is corruption, never a crash. */
static int parse_cut(const uint8_t *data, size_t len, cut_marker *out,
                     pki_err *err) {
  if (len != CUT_LEN) {
    PKI_ERR(err, PKI_ERR_INVALID, "cut marker is %zu bytes, not %d", len,
            CUT_LEN);
    return 0;
  }
  CBS cbs, magic, chain;
  uint32_t version, reserved, crc;
  CBS_init(&cbs, data, len);
  if (!CBS_get_bytes(&cbs, &magic, 8) || !CBS_get_u32(&cbs, &version) ||
      !CBS_get_u32(&cbs, &reserved) || !CBS_get_u64(&cbs, &out->segment) ||
      !CBS_get_u64(&cbs, &out->offset) || !CBS_get_u64(&cbs, &out->next_seq) ||
      !CBS_get_bytes(&cbs, &chain, PKI_JOURNAL_HASH_LEN) ||
      !CBS_get_u32(&cbs, &crc)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot read cut marker");
    return 0;
  }
  if (memcmp(CBS_data(&magic), CUT_MAGIC, 8) != 0 ||
      crc != pki_crc32c(0, data, CUT_LEN - 4)) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a pkid cut marker (bad magic or CRC)");
    return 0;
  }
  if (version != FORMAT_VERSION || reserved != 0 || out->segment == 0 ||
      out->next_seq == 0 || out->offset < PKI_JOURNAL_SEG_HEADER_LEN) {
    PKI_ERR(err, PKI_ERR_INVALID, "cut marker names an impossible position");
    return 0;
  }
  memcpy(out->chain, CBS_data(&chain), PKI_JOURNAL_HASH_LEN);
  return 1;
}

/* ---- directory and files ---------------------------------------------- */

typedef struct dir_list {
  uint64_t *segs;
  size_t nsegs;
  uint64_t *snaps; /* seqs */
  size_t nsnaps;
  uint64_t *cuts; /* segment numbers of cut markers */
  size_t ncuts;
} dir_list;

static void dir_list_free(dir_list *l) {
  free(l->segs);
  free(l->snaps);
  free(l->cuts);
  memset(l, 0, sizeof(*l));
}

/* parse_hex16 reads the 16 lower-case hex digits our file names start with. */
static int parse_hex16(const char *s, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = s[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return 0;
    }
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 1;
}

static int push_u64(uint64_t **arr, size_t *n, uint64_t v) {
  /* Grow at powers of two: the count is a power of two when full. */
  if ((*n & (*n - 1)) == 0) {
    size_t cap = *n == 0 ? 16 : *n * 2;
    uint64_t *grown = realloc(*arr, cap * sizeof(uint64_t));
    if (grown == NULL) return 0;
    *arr = grown;
  }
  (*arr)[(*n)++] = v;
  return 1;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* list_dir finds segments and snapshots, sorted. With |remove_temps| it
 * deletes temporary files left by a crash in the middle of creating a
 * segment or a snapshot (they were never renamed, so never in use). */
static int list_dir(const char *dir, dir_list *out, int remove_temps,
                    pki_err *err) {
  memset(out, 0, sizeof(*out));
  DIR *d = opendir(dir);
  if (d == NULL) {
    int e = errno;
    PKI_ERR(err, e == ENOENT ? PKI_ERR_NOT_FOUND : io_code(e),
            "cannot read journal directory %s: %s", dir, strerror(e));
    return 0;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *name = e->d_name;
    uint64_t v;
    if (strlen(name) < 20 || !parse_hex16(name, &v)) continue;
    const char *ext = name + 16;
    int ok = 1;
    if (strcmp(ext, ".seg") == 0) {
      ok = push_u64(&out->segs, &out->nsegs, v);
    } else if (strcmp(ext, ".snap") == 0) {
      ok = push_u64(&out->snaps, &out->nsnaps, v);
    } else if (strcmp(ext, ".cut") == 0) {
      ok = push_u64(&out->cuts, &out->ncuts, v);
    } else if (remove_temps && (strncmp(ext, ".seg.tmp.", 9) == 0 ||
                                strncmp(ext, ".snap.tmp.", 10) == 0 ||
                                strncmp(ext, ".cut.tmp.", 9) == 0)) {
      unlinkat(dirfd(d), name, 0);
    }
    if (!ok) {
      closedir(d);
      dir_list_free(out);
      PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory listing %s", dir);
      return 0;
    }
  }
  closedir(d);
  if (out->nsegs > 0) qsort(out->segs, out->nsegs, sizeof(uint64_t), cmp_u64);
  if (out->nsnaps > 0) qsort(out->snaps, out->nsnaps, sizeof(uint64_t), cmp_u64);
  return 1;
}

static void seg_path(char *out, size_t size, const char *dir, uint64_t n) {
  snprintf(out, size, "%s/%016llx.seg", dir, (ull)n);
}

static void snap_path(char *out, size_t size, const char *dir, uint64_t seq) {
  snprintf(out, size, "%s/%016llx.snap", dir, (ull)seq);
}

static void cut_path(char *out, size_t size, const char *dir, uint64_t seg) {
  snprintf(out, size, "%s/%016llx.cut", dir, (ull)seg);
}

/* read_cut reads the cut marker of |l|, if there is one (*found). Only the
 * last segment can have one: a marker is written only by an append that
 * failed, after which that journal appends nothing more, and the next open
 * removes it before appending. Anything else is corruption; |bad| names the
 * marker at fault. */
static int read_cut(const char *dir, const dir_list *l, cut_marker *out,
                    int *found, char *bad, size_t bad_size, pki_err *err) {
  *found = 0;
  if (l->ncuts == 0) return 1;
  char path[PATH_MAX];
  cut_path(path, sizeof(path), dir, l->cuts[l->ncuts - 1]);
  if (l->ncuts > 1 || l->nsegs == 0 ||
      l->cuts[0] != l->segs[l->nsegs - 1]) {
    snprintf(bad, bad_size, "%s", path);
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s: offset 0: a cut marker may only name the last segment, "
            "once", path);
    return 0;
  }
  uint8_t *data = NULL;
  size_t len = 0;
  int ok = pki_file_read(&data, &len, path, CUT_LEN + 1, err) &&
           parse_cut(data, len, out, err);
  free(data);
  if (ok && out->segment != l->cuts[0]) {
    PKI_ERR(err, PKI_ERR_INVALID, "header says segment %016llx",
            (ull)out->segment);
    ok = 0;
  }
  if (!ok) {
    snprintf(bad, bad_size, "%s", path);
    pki_err_prefix(err, "%s: ", path);
    return 0;
  }
  *found = 1;
  return 1;
}

/* check_contiguous: segments are numbered 1, 2, ... with no gap; a missing
 * one is history lost. Fills |bad| with the name where the gap shows. */
static int check_contiguous(const char *dir, const dir_list *l, char *bad,
                            size_t bad_size, pki_err *err) {
  for (size_t i = 0; i < l->nsegs; i++) {
    if (l->segs[i] != i + 1) {
      seg_path(bad, bad_size, dir, l->segs[i]);
      PKI_ERR(err, PKI_ERR_INVALID,
              "%s: offset 0: segment %016llx is missing before it (the "
              "journal's history has a gap)", bad, (ull)(i + 1));
      return 0;
    }
  }
  return 1;
}

typedef struct mapped {
  const uint8_t *data;
  size_t len;
} mapped;

/* map_file maps a whole segment read-only: replay parses it in place. */
static int map_file(const char *path, mapped *m, pki_err *err) {
  m->data = NULL;
  m->len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    PKI_ERR(err, io_code(e), "cannot open %s: %s", path, strerror(e));
    return 0;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    close(fd);
    return 0;
  }
  if (st.st_size > 0) {
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      PKI_ERR(err, PKI_ERR_IO, "cannot map %s: %s", path, strerror(errno));
      close(fd);
      return 0;
    }
    madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
    m->data = p;
    m->len = (size_t)st.st_size;
  }
  close(fd);
  return 1;
}

static void unmap_file(mapped *m) {
  if (m->data != NULL) munmap((void *)m->data, m->len);
  m->data = NULL;
}

/* scan_segment checks segment |segno|'s header and reads its records from
 * scan->offset. |from_top|: the scan starts at the first record, so the
 * header's first seq and chain hash must continue the scan's. |end|: where
 * a cut marker says the segment's durable part ends (UINT64_MAX: none);
 * the records before it must all be whole, and the bytes after it are
 * counted in s->torn_bytes, unread. */
static int scan_segment(const char *path, uint64_t segno, pki_journal_scan *s,
                        int from_top, int allow_torn, uint64_t end,
                        pki_journal_replay_fn fn, void *ctx,
                        uint64_t *file_len, pki_err *err) {
  mapped m;
  if (!map_file(path, &m, err)) {
    s->bad_offset = 0;
    return 0;
  }
  *file_len = m.len;
  pki_journal_seg_header h;
  int ok = 0;
  size_t len = m.len;
  s->bad_offset = 0;
  if (end != UINT64_MAX) {
    if (end > m.len) {
      /* Bytes that were durable are gone: history was lost. */
      s->bad_offset = m.len;
      PKI_ERR(err, PKI_ERR_INVALID,
              "offset %zu: segment ends before its durable end (%llu) that "
              "the cut marker records", m.len, (ull)end);
      goto done;
    }
    len = (size_t)end;
    allow_torn = 0;
  }
  if (!pki_journal_parse_seg_header(m.data, len, &h, err)) goto done;
  if (h.segment != segno) {
    s->bad_offset = 16;
    PKI_ERR(err, PKI_ERR_INVALID, "offset 16: header says segment %016llx",
            (ull)h.segment);
    goto done;
  }
  if (from_top) {
    if (h.first_seq != s->next_seq) {
      s->bad_offset = 24;
      PKI_ERR(err, PKI_ERR_INVALID,
              "offset 24: segment starts at seq %llu where %llu was expected "
              "(records are missing)", (ull)h.first_seq, (ull)s->next_seq);
      goto done;
    }
    if (memcmp(h.prev_chain, s->chain, PKI_JOURNAL_HASH_LEN) != 0) {
      s->bad_offset = 32;
      PKI_ERR(err, PKI_ERR_INVALID,
              "offset 32: segment does not link to the chain hash before it");
      goto done;
    }
    s->offset = PKI_JOURNAL_SEG_HEADER_LEN;
  }
  s->segment = segno;
  s->version = h.version;
  ok = pki_journal_parse_records(m.data, len, s, allow_torn, fn, ctx, err);
  if (ok && len < m.len) s->torn_bytes = m.len - len;
done:
  if (!ok) pki_err_prefix(err, "%s: ", path);
  unmap_file(&m);
  return ok;
}

static int pread_all(int fd, uint8_t *p, size_t len, uint64_t off) {
  while (len > 0) {
    ssize_t n = pread(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 1;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off) {
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 0;
    if (n == 0) {
      errno = EIO;
      return 0;
    }
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 1;
}

static int fdatasync_retry(int fd) {
  int r;
  do {
    r = fdatasync(fd);
  } while (r != 0 && errno == EINTR);
  return r == 0;
}

static int fsync_retry(int fd) {
  int r;
  do {
    r = fsync(fd);
  } while (r != 0 && errno == EINTR);
  return r == 0;
}

/* sync_dir makes the names in the journal directory durable (a new or
 * renamed entry is on disk only once its directory is synced: fsync(2)).
 * EINVAL: a file system that cannot sync directories; the entry is as
 * durable there as it can be. */
static int sync_dir(pki_journal *j) {
  return fsync_retry(j->dir_fd) || errno == EINVAL;
}

/* truncate_sync cuts |fd| to |size| and makes the new size durable. The cut
 * also drops the bytes after |size| from the page cache, which after a
 * failed fdatasync may hold records the disk does not (or may only partly)
 * have; fdatasync(2) then flushes the size, metadata "needed for a
 * subsequent data retrieval". */
static int truncate_sync(int fd, uint64_t size) {
  int r;
  do {
    r = ftruncate(fd, (off_t)size);
  } while (r != 0 && errno == EINTR);
  return r == 0 && fdatasync_retry(fd);
}

/* read_seg_header reads and checks just the header of a segment that a
 * snapshot covers: restart does not read the records under a snapshot. */
static int read_seg_header(const char *path, uint64_t segno,
                           pki_journal_seg_header *h, uint64_t *size,
                           pki_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    PKI_ERR(err, io_code(e), "cannot open %s: %s", path, strerror(e));
    return 0;
  }
  uint8_t buf[PKI_JOURNAL_SEG_HEADER_LEN];
  struct stat st;
  size_t got = 0;
  if (fstat(fd, &st) == 0) {
    got = (size_t)st.st_size < sizeof(buf) ? (size_t)st.st_size : sizeof(buf);
    *size = (uint64_t)st.st_size;
  }
  int ok = pread_all(fd, buf, got, 0);
  close(fd);
  if (!ok) {
    PKI_ERR(err, PKI_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    return 0;
  }
  if (!pki_journal_parse_seg_header(buf, got, h, err)) {
    pki_err_prefix(err, "%s: ", path);
    return 0;
  }
  if (h->segment != segno) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: offset 16: header says segment %016llx",
            path, (ull)h->segment);
    return 0;
  }
  return 1;
}

/* ---- open, append, snapshot ------------------------------------------- */

/* create_segment makes segment |num| whole and durable before any record
 * goes into it: the header is written to a temporary file, synced, renamed
 * into place (rename(2) is atomic) and the directory synced. The descriptor
 * that wrote the header is the one appended to, so nothing can fail once
 * the segment has its name: a failure before the rename leaves at most the
 * temporary file, removed here or by the next open.
 *
 * On failure the current segment is untouched. When it was for want of
 * space or descriptors (is_exhaustion) before the rename, nothing changed
 * at all: PKI_ERR_EXHAUSTED, with *out_retry set, and the roll may be tried
 * again. Anything else is PKI_ERR_IO (or PKI_ERR_EXISTS for a stray file
 * where the segment should go). */
static int create_segment(pki_journal *j, uint64_t num, int *out_retry,
                          pki_err *err) {
  char path[PATH_MAX], tmp[PATH_MAX];
  *out_retry = 0;
  seg_path(path, sizeof(path), j->dir, num);
  /* Only this process writes here (it holds the lock), so a fixed name is
   * enough; O_TRUNC reuses one left by an earlier failed attempt. */
  int n = snprintf(tmp, sizeof(tmp), "%s/%016llx.seg.tmp.new", j->dir,
                   (ull)num);
  if (n < 0 || (size_t)n >= sizeof(tmp)) {
    PKI_ERR(err, PKI_ERR_INVALID, "journal directory name too long: %s",
            j->dir);
    return 0;
  }
  if (pki_file_exists(path)) {
    PKI_ERR(err, PKI_ERR_EXISTS, "cannot create %s: it exists", path);
    return 0;
  }
  uint8_t hdr[PKI_JOURNAL_SEG_HEADER_LEN];
  encode_seg_header(hdr, num, j->next_seq, j->chain);
  const char *step = "create";
  /* 0600 exactly, whatever the umask: fchmod after open. */
  int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) goto fail;
  step = "set the mode of";
  if (fchmod(fd, 0600) != 0) goto fail;
  step = "write";
  if (!pwrite_all(fd, hdr, sizeof(hdr), 0)) goto fail;
  step = "sync";
  if (!fsync_retry(fd)) goto fail;
  step = "rename";
  if (rename(tmp, path) != 0) goto fail;
  if (!sync_dir(j)) {
    /* The segment has its name, but the name may not be durable: records
     * put in it might vanish with it. Nothing has been; stop here. A
     * restart finds it whole (header only) or not at all. */
    int e = errno;
    close(fd);
    PKI_ERR(err, PKI_ERR_IO, "cannot sync journal directory %s after "
            "creating %s: %s", j->dir, path, strerror(e));
    return 0;
  }
  if (j->fd >= 0) close(j->fd);
  j->fd = fd;
  j->seg = num;
  j->seg_size = PKI_JOURNAL_SEG_HEADER_LEN;
  j->zeroed = j->seg_size;
  j->no_zero_ahead = 0;
  j->seg_version = SEG_VERSION;
  j->stats.segments = num;
  return 1;

fail:;
  int e = errno;
  if (fd >= 0) close(fd);
  unlink(tmp);
  *out_retry = is_exhaustion(e);
  PKI_ERR(err, io_code(e), "cannot %s %s: %s", step, tmp, strerror(e));
  return 0;
}

/* check_snapshot_position checks that a snapshot with a good hash matches the journal
 * where replay will resume: the resume offset is inside the segment and the
 * chain hash stored just before it (or in the segment header) is the
 * snapshot's. A mismatch means one of the two was altered. */
static int check_snapshot_position(pki_journal *j, const dir_list *l,
                                   const pki_journal_snapshot_info *s,
                                   const char *spath, pki_err *err) {
  if (s->segment > l->nsegs) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s: resumes in segment %016llx, which does not exist", spath,
            (ull)s->segment);
    return 0;
  }
  char path[PATH_MAX];
  seg_path(path, sizeof(path), j->dir, s->segment);
  pki_journal_seg_header h;
  uint64_t size = 0;
  if (!read_seg_header(path, s->segment, &h, &size, err)) return 0;
  uint8_t chain[PKI_JOURNAL_HASH_LEN];
  uint64_t seq_here = 0;
  if (s->offset > size) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s: resumes at offset %llu of %s, past its end (%llu bytes)",
            spath, (ull)s->offset, path, (ull)size);
    return 0;
  }
  if (s->offset == PKI_JOURNAL_SEG_HEADER_LEN) {
    memcpy(chain, h.prev_chain, sizeof(chain));
    seq_here = h.first_seq;
  } else {
    /* The previous record ends with its chain hash and CRC. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int ok = fd >= 0 && s->offset >= PKI_JOURNAL_SEG_HEADER_LEN + PKI_JOURNAL_REC_OVERHEAD &&
             pread_all(fd, chain, sizeof(chain), s->offset - 36);
    if (fd >= 0) close(fd);
    if (!ok) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: cannot read %s at offset %llu", spath,
              path, (ull)s->offset);
      return 0;
    }
    seq_here = s->seq + 1;
  }
  if (seq_here != s->seq + 1 || memcmp(chain, s->chain, sizeof(chain)) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s: does not match the journal at %s offset %llu (chain hash or "
            "seq differs)", spath, path, (ull)s->offset);
    return 0;
  }
  return 1;
}

/* load_snapshot tries the snapshots newest first. It returns 1 with
 * |*found| set when one was handed to the caller, 1 with |*found| clear
 * when none is usable, 0 on corruption or when the callback fails. */
static int load_snapshot(pki_journal *j, const dir_list *l,
                         pki_journal_snapshot_fn on_snapshot, void *ctx,
                         pki_journal_snapshot_info *out, int *found,
                         pki_err *err) {
  *found = 0;
  for (size_t k = l->nsnaps; k-- > 0;) {
    char path[PATH_MAX];
    snap_path(path, sizeof(path), j->dir, l->snaps[k]);
    uint8_t *data = NULL;
    size_t len = 0;
    pki_err perr;
    pki_err_clear(&perr);
    if (!pki_file_read(&data, &len, path, MAX_SNAPSHOT_FILE, &perr) ||
        !pki_journal_parse_snapshot(data, len, out, &perr) ||
        out->seq != l->snaps[k]) {
      free(data);
      /* Out of memory or descriptors says nothing about the snapshot: the
       * open fails, to be retried, rather than count a good snapshot as
       * damaged and replay everything. */
      if (perr.code == PKI_ERR_EXHAUSTED) {
        *err = perr;
        return 0;
      }
      /* A damaged snapshot is only a slower start: fall back. */
      j->stats.snapshots_skipped++;
      continue;
    }
    int ok = check_snapshot_position(j, l, out, path, err) &&
             on_snapshot(ctx, out->seq, out->state, out->len, err);
    /* The caller has copied what it needs; keep only the position. */
    out->state = NULL;
    out->len = 0;
    free(data);
    if (!ok) return 0;
    *found = 1;
    return 1;
  }
  return 1;
}

static void journal_free(pki_journal *j) {
  if (j == NULL) return;
  /* Leave the segment holding just its records. Should this fail, the
   * next open cuts the zeros as it would after a crash. */
  if (j->fd >= 0 && j->zeroed > j->seg_size &&
      !atomic_load_explicit(&j->failed, memory_order_relaxed)) {
    truncate_sync(j->fd, j->seg_size);
  }
  if (j->fd >= 0) close(j->fd);
  if (j->dir_fd >= 0) close(j->dir_fd); /* releases the flock */
  free(j->buf);
  free(j->dir);
  free(j);
}

pki_journal *pki_journal_open(const char *dir, const pki_journal_options *opts,
                              pki_journal_replay_fn fn, void *ctx,
                              pki_err *err) {
  pki_journal *j = calloc(1, sizeof(*j));
  dir_list l;
  memset(&l, 0, sizeof(l));
  if (j == NULL || (j->dir = strdup(dir)) == NULL) {
    free(j);
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory opening journal %s", dir);
    return NULL;
  }
  j->fd = -1;
  j->dir_fd = -1;
  j->next_seq = 1;
  j->segment_bytes = opts != NULL && opts->segment_bytes > 0
                         ? opts->segment_bytes
                         : PKI_JOURNAL_DEFAULT_SEGMENT_BYTES;
  if (!pki_mkdirs(dir, 0700, err)) goto fail;
  j->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (j->dir_fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot open journal directory %s: %s", dir,
            strerror(errno));
    goto fail;
  }
  if (flock(j->dir_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      PKI_ERR(err, PKI_ERR_EXISTS, "journal %s is open in another process",
              dir);
    } else {
      PKI_ERR(err, PKI_ERR_IO, "cannot lock journal %s: %s", dir,
              strerror(errno));
    }
    goto fail;
  }
  if (!list_dir(dir, &l, 1, err)) goto fail;

  if (l.nsegs == 0) {
    if (l.nsnaps > 0 || l.ncuts > 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "journal %s has snapshots or cut markers but no segments", dir);
      goto fail;
    }
    int retry;
    if (!create_segment(j, 1, &retry, err)) goto fail;
    dir_list_free(&l);
    return j;
  }
  char bad[PATH_MAX];
  if (!check_contiguous(dir, &l, bad, sizeof(bad), err)) goto fail;
  cut_marker cut;
  int have_cut = 0;
  if (!read_cut(dir, &l, &cut, &have_cut, bad, sizeof(bad), err)) goto fail;

  pki_journal_scan scan;
  memset(&scan, 0, sizeof(scan));
  scan.offset = PKI_JOURNAL_SEG_HEADER_LEN;
  scan.next_seq = 1;
  size_t start = 0;
  int from_top = 1;
  if (opts != NULL && opts->on_snapshot != NULL && l.nsnaps > 0) {
    pki_journal_snapshot_info snap;
    int found = 0;
    if (!load_snapshot(j, &l, opts->on_snapshot, ctx, &snap, &found, err)) {
      goto fail;
    }
    if (found) {
      j->stats.snapshot_seq = snap.seq;
      start = (size_t)(snap.segment - 1);
      scan.offset = snap.offset;
      scan.next_seq = snap.seq + 1;
      memcpy(scan.chain, snap.chain, PKI_JOURNAL_HASH_LEN);
      from_top = 0;
    }
  }

  /* Segments under the snapshot: headers only, to catch a damaged or
   * misplaced file without reading the records. */
  uint64_t prev_first = 0;
  for (size_t i = 0; i < start; i++) {
    char path[PATH_MAX];
    seg_path(path, sizeof(path), dir, l.segs[i]);
    pki_journal_seg_header h;
    uint64_t size;
    if (!read_seg_header(path, l.segs[i], &h, &size, err)) goto fail;
    if (h.first_seq < prev_first) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: offset 24: first seq goes backwards",
              path);
      goto fail;
    }
    prev_first = h.first_seq;
  }

  for (size_t i = start; i < l.nsegs; i++) {
    char path[PATH_MAX];
    seg_path(path, sizeof(path), dir, l.segs[i]);
    int last = i + 1 == l.nsegs;
    uint64_t before = scan.records, file_len = 0;
    uint64_t end = last && have_cut ? cut.offset : UINT64_MAX;
    if (!scan_segment(path, l.segs[i], &scan, from_top, last, end, fn, ctx,
                      &file_len, err)) {
      goto fail;
    }
    from_top = 1;
    j->stats.replayed += scan.records - before;
  }

  char path[PATH_MAX];
  uint64_t last_seg = l.segs[l.nsegs - 1];
  seg_path(path, sizeof(path), dir, last_seg);
  if (have_cut && (scan.next_seq != cut.next_seq ||
                   memcmp(scan.chain, cut.chain, PKI_JOURNAL_HASH_LEN) != 0)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s: offset %llu: the record there is not the one the cut marker "
            "names (seq %llu)", path, (ull)cut.offset,
            (ull)(cut.next_seq - 1));
    goto fail;
  }
  j->fd = open(path, O_WRONLY | O_CLOEXEC);
  if (j->fd < 0) {
    int e = errno;
    PKI_ERR(err, io_code(e), "cannot open %s: %s", path, strerror(e));
    goto fail;
  }
  if (scan.torn_bytes > 0) {
    /* Cut a torn tail, or what a cut marker says was never durable, so
     * that new records follow the last good one. */
    if (!truncate_sync(j->fd, scan.offset)) {
      PKI_ERR(err, PKI_ERR_IO, "cannot cut %s back to offset %llu: %s", path,
              (ull)scan.offset, strerror(errno));
      goto fail;
    }
    j->stats.truncated_bytes = scan.torn_bytes;
    j->stats.truncated_zeros = scan.torn_zeros && !have_cut;
  }
  if (have_cut) {
    /* Only once the cut is durable, and before any append: a marker left
     * behind would cut acknowledged records at the next open. */
    char cpath[PATH_MAX];
    cut_path(cpath, sizeof(cpath), dir, last_seg);
    if ((unlink(cpath) != 0 && errno != ENOENT) || !sync_dir(j)) {
      PKI_ERR(err, PKI_ERR_IO, "cannot remove cut marker %s: %s", cpath,
              strerror(errno));
      goto fail;
    }
  }
  j->seg = last_seg;
  j->seg_size = scan.offset;
  j->zeroed = scan.offset;
  j->seg_version = scan.version;
  j->next_seq = scan.next_seq;
  memcpy(j->chain, scan.chain, PKI_JOURNAL_HASH_LEN);
  j->stats.segments = last_seg;
  dir_list_free(&l);
  return j;

fail:
  dir_list_free(&l);
  journal_free(j);
  return NULL;
}

static void set_failed(pki_journal *j, pki_err *err) {
  snprintf(j->failure, sizeof(j->failure), "%s", err->msg);
  atomic_store_explicit(&j->failed, 1, memory_order_release);
}

/* write_cut_marker records the durable end for the next open to cut back
 * to, when a failed append could not cut the segment itself. */
static int write_cut_marker(pki_journal *j, pki_err *err) {
  cut_marker c;
  c.segment = j->seg;
  c.offset = j->seg_size;
  c.next_seq = j->next_seq;
  memcpy(c.chain, j->chain, PKI_JOURNAL_HASH_LEN);
  uint8_t buf[CUT_LEN];
  encode_cut(buf, &c);
  char path[PATH_MAX];
  cut_path(path, sizeof(path), j->dir, j->seg);
  return pki_file_write_atomic(path, buf, sizeof(buf), 0600, err);
}

/* append_failed handles a write (|what| "write") or fdatasync ("sync") of
 * an append that failed with |e|. Nothing of the append was acknowledged,
 * so the segment is cut back to its durable end, whatever reached the page
 * cache or the disk: a restart must replay only acknowledged records, and
 * unsynced ones whose pages the kernel dropped after a failed writeback
 * would otherwise turn into a hole under later records.
 *
 * A write that found the disk or quota full (before any sync) and was cut
 * back cleanly changed nothing: PKI_ERR_EXHAUSTED, the journal goes on.
 * Anything else makes the journal refuse every later append (a failed
 * fdatasync cannot be retried: the kernel may have marked the dirty pages
 * clean, so a second fdatasync would report success for data not on disk;
 * fsync(2), "Linux writeback errors"). If the cut fails too, a cut marker
 * asks the next open to make it; the message says whether that worked. */
static int append_failed(pki_journal *j, const char *what, int e,
                         pki_err *err) {
  int cut = truncate_sync(j->fd, j->seg_size);
  int cut_e = cut ? 0 : errno;
  j->zeroed = j->seg_size; /* written ahead or not, the zeros are gone too */
  if (cut && is_exhaustion(e) && strcmp(what, "write") == 0) {
    j->stats.exhausted++;
    PKI_ERR(err, PKI_ERR_EXHAUSTED,
            "journal %s: %s on writing segment %016llx (%s); nothing was "
            "appended, retry when there is space", j->dir,
            e == EDQUOT ? "disk quota exhausted" : "disk full",
            (ull)j->seg, strerror(e));
    return 0;
  }
  if (cut) {
    PKI_ERR(err, PKI_ERR_IO,
            "cannot %s journal segment %016llx in %s: %s; cut back to its "
            "durable end (offset %llu), nothing of this append was kept",
            what, (ull)j->seg, j->dir, strerror(e), (ull)j->seg_size);
  } else {
    pki_err merr;
    pki_err_clear(&merr);
    int marked = write_cut_marker(j, &merr);
    PKI_ERR(err, PKI_ERR_IO,
            "cannot %s journal segment %016llx in %s: %s; nor cut it back to "
            "its durable end (offset %llu, after record %llu): %s; %s%s",
            what,
            (ull)j->seg, j->dir, strerror(e), (ull)j->seg_size,
            (ull)(j->next_seq - 1), strerror(cut_e),
            marked ? "a cut marker was written: the next open cuts it"
                   : "nor write a cut marker: a restart may replay this "
                     "append's records, never acknowledged (see RECOVERY "
                     "RULES): ",
            marked ? "" : merr.msg);
  }
  set_failed(j, err);
  return 0;
}

/* roll closes the current segment and starts the next. The zeros written
 * ahead are cut first, and durably, so that only the last segment ever
 * has any: a closed segment holds its records and nothing after them. */
static int roll(pki_journal *j, pki_err *err) {
  if (j->zeroed > j->seg_size) {
    if (!truncate_sync(j->fd, j->seg_size)) {
      PKI_ERR(err, PKI_ERR_IO,
              "journal %s: cannot cut the space written ahead of segment "
              "%016llx back to offset %llu before starting the next: %s",
              j->dir, (ull)j->seg, (ull)j->seg_size, strerror(errno));
      set_failed(j, err);
      return 0;
    }
    j->zeroed = j->seg_size;
  }
  int retry;
  if (create_segment(j, j->seg + 1, &retry, err)) return 1;
  pki_err_prefix(err, "journal %s: cannot start segment %016llx: ", j->dir,
                 (ull)(j->seg + 1));
  if (retry) {
    /* Nothing was written: the next append tries the roll again. */
    char why[sizeof(err->msg)];
    snprintf(why, sizeof(why), "%s", err->msg);
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "%s; nothing was appended, retry later",
            why);
    j->stats.exhausted++;
    return 0;
  }
  /* The state of the directory is unknown: stop rather than guess. */
  set_failed(j, err);
  return 0;
}

/* zeros_to_write says how many zero bytes an append of |total| bytes
 * writes after its records (WRITTEN AHEAD in journal.h): none while the
 * records fit in the zeros already there, else enough for the next
 * ZERO_AHEAD bytes of records, up to the segment's size. */
static size_t zeros_to_write(const pki_journal *j, size_t total) {
  uint64_t end = j->seg_size + total;
  if (j->no_zero_ahead || end <= j->zeroed) return 0;
  uint64_t want = (end + ZERO_AHEAD + 4095) & ~(uint64_t)4095;
  if (want > j->segment_bytes) want = j->segment_bytes;
  return want > end ? (size_t)(want - end) : 0;
}

int pki_journal_append(pki_journal *j, const pki_journal_entry *entries,
                       size_t n, pki_err *err) {
  if (atomic_load_explicit(&j->failed, memory_order_relaxed)) {
    PKI_ERR(err, PKI_ERR_IO,
            "journal %s refuses appends after an earlier failure (%s); "
            "reopen it", j->dir, j->failure);
    return 0;
  }
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (entries[i].type == 0 || entries[i].len > PKI_JOURNAL_MAX_PAYLOAD ||
        (entries[i].len > 0 && entries[i].payload == NULL)) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "journal entry %zu: type 0 or payload of %zu bytes (at most %u)",
              i, entries[i].len, PKI_JOURNAL_MAX_PAYLOAD);
      return 0;
    }
    total += PKI_JOURNAL_REC_OVERHEAD + entries[i].len;
    if (total > MAX_BATCH_BYTES) {
      PKI_ERR(err, PKI_ERR_INVALID, "journal batch larger than %zu bytes",
              MAX_BATCH_BYTES);
      return 0;
    }
  }
  if (n == 0) return 1;

  /* A full segment is closed; so is one of version 1, whose records may
   * not carry FLAG_FIRST, before anything is written ahead into it. */
  if ((j->seg_size >= j->segment_bytes &&
       j->seg_size > PKI_JOURNAL_SEG_HEADER_LEN) ||
      j->seg_version != SEG_VERSION) {
    if (!roll(j, err)) return 0;
  }

  size_t zeros = zeros_to_write(j, total);
  if (total + zeros > j->buf_cap) {
    size_t want = total + zeros;
    size_t cap = j->buf_cap * 2 > want ? j->buf_cap * 2 : want;
    uint8_t *grown = realloc(j->buf, cap);
    if (grown == NULL) {
      PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory appending to journal");
      return 0;
    }
    j->buf = grown;
    j->buf_cap = cap;
  }

  uint8_t chain[PKI_JOURNAL_HASH_LEN];
  memcpy(chain, j->chain, sizeof(chain));
  uint8_t *p = j->buf;
  for (size_t i = 0; i < n; i++) {
    const pki_journal_entry *e = &entries[i];
    CBB cbb;
    CBB_init_fixed(&cbb, p, PKI_JOURNAL_REC_HEADER_LEN);
    CBB_add_u32(&cbb, (uint32_t)e->len);
    CBB_add_u8(&cbb, e->type);
    CBB_add_u8(&cbb, i == 0 ? FLAG_FIRST : 0);
    CBB_add_u16(&cbb, 0);
    CBB_add_u64(&cbb, j->next_seq + i);
    CBB_add_u64(&cbb, e->time);
    CBB_cleanup(&cbb);
    if (e->len > 0) memcpy(p + PKI_JOURNAL_REC_HEADER_LEN, e->payload, e->len);
    size_t body = PKI_JOURNAL_REC_HEADER_LEN + e->len;
    SHA256_CTX sha;
    SHA256_Init(&sha);
    SHA256_Update(&sha, chain, sizeof(chain));
    SHA256_Update(&sha, p, body);
    SHA256_Final(chain, &sha);
    memcpy(p + body, chain, sizeof(chain));
    CBB_init_fixed(&cbb, p + body + PKI_JOURNAL_HASH_LEN, 4);
    CBB_add_u32(&cbb, pki_crc32c(0, p, body + PKI_JOURNAL_HASH_LEN));
    CBB_cleanup(&cbb);
    p += PKI_JOURNAL_REC_OVERHEAD + e->len;
  }

  /* The records and the zeros after them in one write: one fdatasync
   * makes both durable. */
  if (zeros > 0) memset(j->buf + total, 0, zeros);
  if (!pwrite_all(j->fd, j->buf, total + zeros, j->seg_size)) {
    int e = errno;
    /* The records alone may fit where the zeros did not. */
    if (zeros > 0 && is_exhaustion(e)) j->no_zero_ahead = 1;
    return append_failed(j, "write", e, err);
  }
  uint64_t t0 = now_ns();
  if (!fdatasync_retry(j->fd)) return append_failed(j, "sync", errno, err);
  /* Durable: only now do the durable end and the chain move. */
  j->stats.last_fsync_ns = now_ns() - t0;
  j->stats.syncs++;
  j->stats.records += n;
  j->stats.bytes += total;
  j->seg_size += total;
  if (j->seg_size + zeros > j->zeroed) j->zeroed = j->seg_size + zeros;
  j->next_seq += n;
  memcpy(j->chain, chain, sizeof(chain));
  return 1;
}

int pki_journal_snapshot(pki_journal *j, const uint8_t *state, size_t len,
                         pki_err *err) {
  if (atomic_load_explicit(&j->failed, memory_order_relaxed)) {
    PKI_ERR(err, PKI_ERR_IO,
            "journal %s refuses snapshots after an earlier failure (%s)",
            j->dir, j->failure);
    return 0;
  }
  if (len > MAX_SNAPSHOT_FILE - PKI_JOURNAL_SNAP_OVERHEAD) {
    PKI_ERR(err, PKI_ERR_INVALID, "snapshot state too large (%zu bytes)", len);
    return 0;
  }
  size_t total = PKI_JOURNAL_SNAP_OVERHEAD + len;
  uint8_t *buf = malloc(total);
  if (buf == NULL) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory writing a snapshot");
    return 0;
  }
  uint64_t seq = j->next_seq - 1;
  CBB cbb;
  CBB_init_fixed(&cbb, buf, SNAP_HEADER_LEN);
  CBB_add_bytes(&cbb, (const uint8_t *)SNAP_MAGIC, 8);
  CBB_add_u32(&cbb, FORMAT_VERSION);
  CBB_add_u32(&cbb, 0);
  CBB_add_u64(&cbb, seq);
  CBB_add_bytes(&cbb, j->chain, PKI_JOURNAL_HASH_LEN);
  CBB_add_u64(&cbb, j->seg);
  CBB_add_u64(&cbb, j->seg_size);
  CBB_add_u64(&cbb, len);
  CBB_cleanup(&cbb);
  if (len > 0) memcpy(buf + SNAP_HEADER_LEN, state, len);
  SHA256(buf, SNAP_HEADER_LEN + len, buf + SNAP_HEADER_LEN + len);

  char path[PATH_MAX];
  snap_path(path, sizeof(path), j->dir, seq);
  int ok = pki_file_write_atomic(path, buf, total, 0600, err);
  free(buf);
  if (!ok) return 0;

  /* Old snapshots only slow nothing down, but they grow with the state;
   * two are kept so that a damaged newest one has a fallback. */
  dir_list l;
  pki_err lerr;
  pki_err_clear(&lerr);
  if (list_dir(j->dir, &l, 0, &lerr)) {
    for (size_t k = 0; k + KEEP_SNAPSHOTS < l.nsnaps; k++) {
      snap_path(path, sizeof(path), j->dir, l.snaps[k]);
      unlink(path);
    }
    dir_list_free(&l);
  }
  return 1;
}

int pki_journal_read_all(pki_journal *j, pki_journal_replay_fn fn, void *ctx,
                         pki_err *err) {
  pki_journal_scan scan;
  memset(&scan, 0, sizeof(scan));
  scan.next_seq = 1;
  for (uint64_t seg = 1; seg <= j->seg; seg++) {
    char path[PATH_MAX];
    seg_path(path, sizeof(path), j->dir, seg);
    uint64_t file_len = 0;
    /* The last segment only up to its durable end: an append may be
     * under way (on this thread it is not, but the rule is the same). */
    uint64_t end = seg == j->seg ? j->seg_size : UINT64_MAX;
    if (!scan_segment(path, seg, &scan, 1, 0, end, fn, ctx, &file_len, err)) {
      return 0;
    }
  }
  if (scan.next_seq != j->next_seq) {
    PKI_ERR(err, PKI_ERR_INVALID, "journal %s: read %llu records where %llu were written",
            j->dir, (ull)(scan.next_seq - 1), (ull)(j->next_seq - 1));
    return 0;
  }
  return 1;
}

void pki_journal_close(pki_journal *j) { journal_free(j); }

uint64_t pki_journal_next_seq(const pki_journal *j) { return j->next_seq; }

void pki_journal_last_hash(const pki_journal *j,
                           uint8_t out[PKI_JOURNAL_HASH_LEN]) {
  memcpy(out, j->chain, PKI_JOURNAL_HASH_LEN);
}

int pki_journal_failed(const pki_journal *j) {
  return atomic_load_explicit(&j->failed, memory_order_acquire);
}

void pki_journal_get_stats(const pki_journal *j, pki_journal_stats *out) {
  *out = j->stats;
  out->segment = j->seg;
  out->segment_size = j->seg_size;
}

/* ---- verify ------------------------------------------------------------ */

typedef struct verify_snap {
  uint64_t seq;
  uint8_t chain[PKI_JOURNAL_HASH_LEN];
  uint64_t segment, offset;
} verify_snap;

typedef struct verify_ctx {
  pki_journal_verify_result *res;
  const char *dir;
  verify_snap *snaps;
  size_t nsnaps, next; /* sorted by seq; |next| is the first not yet met */
  int snap_failed;
  const char *snap_problem;
  pki_journal_replay_fn fn; /* pki_journal_verify_dir_each's reader */
  void *fn_ctx;
  int fn_failed;
} verify_ctx;

static int snap_mismatch(verify_ctx *v, const verify_snap *s, const char *what,
                         pki_err *err) {
  snap_path(v->res->bad_file, sizeof(v->res->bad_file), v->dir, s->seq);
  v->res->bad_offset = 16;
  v->snap_failed = 1;
  v->snap_problem = what;
  PKI_ERR(err, PKI_ERR_INVALID, "%s: offset 16: %s", v->res->bad_file, what);
  return 0;
}

static int verify_record(void *ctx, const pki_journal_record *rec,
                         pki_err *err) {
  verify_ctx *v = ctx;
  v->res->by_type[rec->type]++;
  if (rec->seq == v->res->mark_seq) {
    memcpy(v->res->mark_chain, rec->chain, PKI_JOURNAL_HASH_LEN);
    v->res->mark_found = 1;
  }
  if (v->next < v->nsnaps && v->snaps[v->next].seq == rec->seq) {
    const verify_snap *s = &v->snaps[v->next++];
    uint64_t end = rec->offset + PKI_JOURNAL_REC_OVERHEAD + rec->len;
    if (memcmp(s->chain, rec->chain, PKI_JOURNAL_HASH_LEN) != 0) {
      return snap_mismatch(v, s, "snapshot chain hash differs from the "
                           "journal's at its seq", err);
    }
    if (!((s->segment == rec->segment && s->offset == end) ||
          (s->segment == rec->segment + 1 &&
           s->offset == PKI_JOURNAL_SEG_HEADER_LEN))) {
      return snap_mismatch(v, s, "snapshot resume position is not just after "
                           "its last record", err);
    }
  }
  if (v->fn != NULL && !v->fn(v->fn_ctx, rec, err)) {
    v->fn_failed = 1;
    return 0;
  }
  return 1;
}

/* load_verify_snaps reads every snapshot; those with a bad hash are counted
 * and left out (open skips them too). */
static int load_verify_snaps(verify_ctx *v, const dir_list *l, pki_err *err) {
  v->snaps = calloc(l->nsnaps > 0 ? l->nsnaps : 1, sizeof(verify_snap));
  if (v->snaps == NULL) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory verifying %s", v->dir);
    return 0;
  }
  for (size_t k = 0; k < l->nsnaps; k++) {
    char path[PATH_MAX];
    snap_path(path, sizeof(path), v->dir, l->snaps[k]);
    uint8_t *data = NULL;
    size_t len = 0;
    pki_journal_snapshot_info info;
    pki_err perr;
    pki_err_clear(&perr);
    if (!pki_file_read(&data, &len, path, MAX_SNAPSHOT_FILE, &perr) ||
        !pki_journal_parse_snapshot(data, len, &info, &perr) ||
        info.seq != l->snaps[k]) {
      free(data);
      if (perr.code == PKI_ERR_EXHAUSTED) { /* says nothing about the snapshot */
        *err = perr;
        return 0;
      }
      v->res->snapshots_bad++;
      continue;
    }
    verify_snap *s = &v->snaps[v->nsnaps++];
    s->seq = info.seq;
    memcpy(s->chain, info.chain, PKI_JOURNAL_HASH_LEN);
    s->segment = info.segment;
    s->offset = info.offset;
    free(data);
  }
  return 1;
}

int pki_journal_verify_dir(const char *dir, pki_journal_verify_result *res,
                           pki_err *err) {
  return pki_journal_verify_dir_at(dir, 0, res, err);
}

int pki_journal_verify_dir_at(const char *dir, uint64_t mark_seq,
                              pki_journal_verify_result *res, pki_err *err) {
  return pki_journal_verify_dir_each(dir, mark_seq, NULL, NULL, res, err);
}

int pki_journal_verify_dir_each(const char *dir, uint64_t mark_seq,
                                pki_journal_replay_fn fn, void *ctx,
                                pki_journal_verify_result *res, pki_err *err) {
  memset(res, 0, sizeof(*res));
  res->mark_seq = mark_seq;
  dir_list l;
  verify_ctx v;
  memset(&v, 0, sizeof(v));
  v.res = res;
  v.dir = dir;
  v.fn = fn;
  v.fn_ctx = ctx;
  int ok = 0;
  if (!list_dir(dir, &l, 0, err)) return 0;
  if (l.nsegs == 0) {
    snprintf(res->bad_file, sizeof(res->bad_file), "%s", dir);
    PKI_ERR(err, PKI_ERR_INVALID, "%s holds no journal segments", dir);
    goto done;
  }
  if (!check_contiguous(dir, &l, res->bad_file, sizeof(res->bad_file), err)) {
    goto done;
  }
  cut_marker cut;
  int have_cut = 0;
  if (!read_cut(dir, &l, &cut, &have_cut, res->bad_file,
                sizeof(res->bad_file), err)) {
    goto done;
  }
  if (!load_verify_snaps(&v, &l, err)) goto done;
  /* A snapshot of the empty journal (seq 0) sits before segment 1's first
   * record. */
  while (v.next < v.nsnaps && v.snaps[v.next].seq == 0) {
    const verify_snap *s = &v.snaps[v.next++];
    if (memcmp(s->chain, zero_hash, PKI_JOURNAL_HASH_LEN) != 0 ||
        s->segment != 1 || s->offset != PKI_JOURNAL_SEG_HEADER_LEN) {
      snap_mismatch(&v, s, "snapshot of the empty journal is inconsistent",
                    err);
      goto done;
    }
  }

  pki_journal_scan scan;
  memset(&scan, 0, sizeof(scan));
  scan.next_seq = 1;
  for (size_t i = 0; i < l.nsegs; i++) {
    char path[PATH_MAX];
    seg_path(path, sizeof(path), dir, l.segs[i]);
    uint64_t file_len = 0;
    int last = i + 1 == l.nsegs;
    uint64_t end = last && have_cut ? cut.offset : UINT64_MAX;
    if (!scan_segment(path, l.segs[i], &scan, 1, last, end, verify_record,
                      &v, &file_len, err)) {
      if (v.fn_failed) {
        /* The reader stopped: its error, about no file. */
      } else if (v.snap_failed) {
        /* The snapshot is at fault, not the segment that was being read. */
        PKI_ERR(err, PKI_ERR_INVALID, "%s: offset 16: %s", res->bad_file,
                v.snap_problem);
      } else {
        snprintf(res->bad_file, sizeof(res->bad_file), "%s", path);
        res->bad_offset = scan.bad_offset;
      }
      goto done;
    }
    res->segments++;
    res->bytes += file_len;
  }
  if (have_cut && (scan.next_seq != cut.next_seq ||
                   memcmp(scan.chain, cut.chain, PKI_JOURNAL_HASH_LEN) != 0)) {
    cut_path(res->bad_file, sizeof(res->bad_file), dir, cut.segment);
    res->bad_offset = 24;
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s: offset 24: the segment's record at offset %llu is not the "
            "one this cut marker names (seq %llu)", res->bad_file,
            (ull)cut.offset, (ull)(cut.next_seq - 1));
    goto done;
  }
  res->cut_marker = have_cut;
  res->records = scan.records;
  res->first_seq = scan.records > 0 ? 1 : 0;
  res->last_seq = scan.next_seq - 1;
  memcpy(res->chain, scan.chain, PKI_JOURNAL_HASH_LEN);
  res->torn_bytes = scan.torn_bytes;
  res->torn_zeros = scan.torn_zeros && !have_cut;
  if (v.next < v.nsnaps) {
    snap_mismatch(&v, &v.snaps[v.next],
                  "snapshot covers records that are not in the journal", err);
    goto done;
  }
  res->snapshots = v.nsnaps;
  ok = 1;
done:
  free(v.snaps);
  dir_list_free(&l);
  return ok;
}
