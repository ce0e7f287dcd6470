#include "lib/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#define FORMAT_VERSION 1
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
  uint64_t seg;
  uint64_t seg_size;
  uint64_t next_seq;
  uint8_t chain[PKI_JOURNAL_HASH_LEN];
  uint8_t *buf; /* reused by every append: no allocation per record */
  size_t buf_cap;
  int failed; /* sticky: set when a write, fsync or roll failed */
  char failure[sizeof(((pki_err *)0)->msg)];
  pki_journal_stats stats;
};

static const uint8_t zero_hash[PKI_JOURNAL_HASH_LEN];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- memory-only parsers ---------------------------------------------- */

static void encode_seg_header(uint8_t out[PKI_JOURNAL_SEG_HEADER_LEN],
                              uint64_t segment, uint64_t first_seq,
                              const uint8_t chain[PKI_JOURNAL_HASH_LEN]) {
  CBB cbb;
  /* Cannot fail: the buffer is exactly the header's size. */
  CBB_init_fixed(&cbb, out, PKI_JOURNAL_SEG_HEADER_LEN);
  CBB_add_bytes(&cbb, (const uint8_t *)SEG_MAGIC, 8);
  CBB_add_u32(&cbb, FORMAT_VERSION);
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
  if (version != FORMAT_VERSION || reserved != 0) {
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

/* find_record looks for a whole record with |seq| at or after |from|: the
 * sign that a bad record is damage in the middle, not a torn end. */
static int find_record(const uint8_t *data, size_t len, size_t from,
                       uint64_t seq) {
  uint8_t want[8];
  for (int i = 0; i < 8; i++) want[i] = (uint8_t)(seq >> (56 - 8 * i));
  for (size_t p = from; p + PKI_JOURNAL_REC_OVERHEAD <= len; p++) {
    if (data[p + 8] != want[0] || memcmp(data + p + 8, want, 8) != 0) continue;
    raw_record r;
    if (parse_one(data + p, len - p, &r) == REC_OK) return 1;
  }
  return 0;
}

/* is_torn applies the torn-tail rule of journal.h to a bad record at |off|. */
static int is_torn(const uint8_t *data, size_t len, size_t off,
                   enum rec_status st, const raw_record *r, uint64_t next_seq) {
  if (st == REC_BAD_CRC) {
    for (size_t i = off + r->size; i < len; i++) {
      if (data[i] != 0) return 0;
    }
  }
  /* A damaged length can make a middle record seem to end at (or run past)
   * the end of the file; the record after it, intact, gives that away. */
  return !find_record(data, len, off + 1, next_seq + 1);
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
      if (allow_torn && is_torn(data, len, off, st, &r, scan->next_seq)) {
        scan->torn_bytes = len - off;
        break;
      }
      scan->bad_offset = off;
      PKI_ERR(err, PKI_ERR_INVALID, "offset %zu: %s (seq %llu expected)%s",
              off, rec_status_text(st), (ull)scan->next_seq,
              allow_torn ? ", and more data after it: not a torn tail" : "");
      return 0;
    }
    scan->bad_offset = off;
    if (r.rec.type == 0 || r.flags != 0 || r.reserved != 0) {
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

/* ---- directory and files ---------------------------------------------- */

typedef struct dir_list {
  uint64_t *segs;
  size_t nsegs;
  uint64_t *snaps; /* seqs */
  size_t nsnaps;
} dir_list;

static void dir_list_free(dir_list *l) {
  free(l->segs);
  free(l->snaps);
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
    PKI_ERR(err, e == ENOENT ? PKI_ERR_NOT_FOUND : PKI_ERR_IO,
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
    } else if (remove_temps && (strncmp(ext, ".seg.tmp.", 9) == 0 ||
                                strncmp(ext, ".snap.tmp.", 10) == 0)) {
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
    PKI_ERR(err, PKI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
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
 * header's first seq and chain hash must continue the scan's. */
static int scan_segment(const char *path, uint64_t segno, pki_journal_scan *s,
                        int from_top, int allow_torn, pki_journal_replay_fn fn,
                        void *ctx, uint64_t *file_len, pki_err *err) {
  mapped m;
  if (!map_file(path, &m, err)) {
    s->bad_offset = 0;
    return 0;
  }
  *file_len = m.len;
  pki_journal_seg_header h;
  int ok = 0;
  s->bad_offset = 0;
  if (!pki_journal_parse_seg_header(m.data, m.len, &h, err)) goto done;
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
  ok = pki_journal_parse_records(m.data, m.len, s, allow_torn, fn, ctx, err);
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

/* read_seg_header reads and checks just the header of a segment that a
 * snapshot covers: restart does not read the records under a snapshot. */
static int read_seg_header(const char *path, uint64_t segno,
                           pki_journal_seg_header *h, uint64_t *size,
                           pki_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
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

/* create_segment makes segment |num| whole and durable (header written to a
 * temporary file, fsynced, renamed, directory fsynced), then opens it for
 * appending. */
static int create_segment(pki_journal *j, uint64_t num, pki_err *err) {
  char path[PATH_MAX];
  seg_path(path, sizeof(path), j->dir, num);
  if (pki_file_exists(path)) {
    PKI_ERR(err, PKI_ERR_EXISTS, "cannot create %s: it exists", path);
    return 0;
  }
  uint8_t hdr[PKI_JOURNAL_SEG_HEADER_LEN];
  encode_seg_header(hdr, num, j->next_seq, j->chain);
  if (!pki_file_write_atomic(path, hdr, sizeof(hdr), 0600, err)) return 0;
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    return 0;
  }
  if (j->fd >= 0) close(j->fd);
  j->fd = fd;
  j->seg = num;
  j->seg_size = PKI_JOURNAL_SEG_HEADER_LEN;
  j->stats.segments = num;
  return 1;
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
      /* A damaged snapshot is only a slower start: fall back. */
      free(data);
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
    if (l.nsnaps > 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "journal %s has snapshots but no segments", dir);
      goto fail;
    }
    if (!create_segment(j, 1, err)) goto fail;
    dir_list_free(&l);
    return j;
  }
  char bad[PATH_MAX];
  if (!check_contiguous(dir, &l, bad, sizeof(bad), err)) goto fail;

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
    if (!scan_segment(path, l.segs[i], &scan, from_top, last, fn, ctx,
                      &file_len, err)) {
      goto fail;
    }
    from_top = 1;
    j->stats.replayed += scan.records - before;
    if (last && scan.torn_bytes > 0) {
      /* Cut the torn tail so that new records follow the last good one. */
      int fd = open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ftruncate(fd, (off_t)scan.offset) != 0 || fsync(fd) != 0) {
        PKI_ERR(err, PKI_ERR_IO, "cannot cut the torn tail of %s: %s", path,
                strerror(errno));
        if (fd >= 0) close(fd);
        goto fail;
      }
      close(fd);
      j->stats.truncated_bytes = scan.torn_bytes;
    }
  }

  char path[PATH_MAX];
  uint64_t last_seg = l.segs[l.nsegs - 1];
  seg_path(path, sizeof(path), dir, last_seg);
  j->fd = open(path, O_WRONLY | O_CLOEXEC);
  if (j->fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    goto fail;
  }
  j->seg = last_seg;
  j->seg_size = scan.offset;
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
  j->failed = 1;
  snprintf(j->failure, sizeof(j->failure), "%s", err->msg);
}

int pki_journal_append(pki_journal *j, const pki_journal_entry *entries,
                       size_t n, pki_err *err) {
  if (j->failed) {
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

  if (j->seg_size >= j->segment_bytes &&
      j->seg_size > PKI_JOURNAL_SEG_HEADER_LEN) {
    if (!create_segment(j, j->seg + 1, err)) {
      /* The state of the directory is unknown: stop rather than guess. */
      set_failed(j, err);
      return 0;
    }
  }

  if (total > j->buf_cap) {
    size_t cap = j->buf_cap * 2 > total ? j->buf_cap * 2 : total;
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
    CBB_add_u8(&cbb, 0);
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

  if (!pwrite_all(j->fd, j->buf, total, j->seg_size)) {
    PKI_ERR(err, PKI_ERR_IO, "cannot write journal segment %016llx in %s: %s",
            (ull)j->seg, j->dir, strerror(errno));
    set_failed(j, err);
    return 0;
  }
  uint64_t t0 = now_ns();
  if (!fdatasync_retry(j->fd)) {
    PKI_ERR(err, PKI_ERR_IO, "cannot sync journal segment %016llx in %s: %s",
            (ull)j->seg, j->dir, strerror(errno));
    set_failed(j, err);
    return 0;
  }
  j->stats.last_fsync_ns = now_ns() - t0;
  j->stats.syncs++;
  j->stats.records += n;
  j->stats.bytes += total;
  j->seg_size += total;
  j->next_seq += n;
  memcpy(j->chain, chain, sizeof(chain));
  return 1;
}

int pki_journal_snapshot(pki_journal *j, const uint8_t *state, size_t len,
                         pki_err *err) {
  if (j->failed) {
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

void pki_journal_close(pki_journal *j) { journal_free(j); }

uint64_t pki_journal_next_seq(const pki_journal *j) { return j->next_seq; }

void pki_journal_last_hash(const pki_journal *j,
                           uint8_t out[PKI_JOURNAL_HASH_LEN]) {
  memcpy(out, j->chain, PKI_JOURNAL_HASH_LEN);
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
  memset(res, 0, sizeof(*res));
  dir_list l;
  verify_ctx v;
  memset(&v, 0, sizeof(v));
  v.res = res;
  v.dir = dir;
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
    if (!scan_segment(path, l.segs[i], &scan, 1, i + 1 == l.nsegs,
                      verify_record, &v, &file_len, err)) {
      if (v.snap_failed) {
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
  res->records = scan.records;
  res->first_seq = scan.records > 0 ? 1 : 0;
  res->last_seq = scan.next_seq - 1;
  memcpy(res->chain, scan.chain, PKI_JOURNAL_HASH_LEN);
  res->torn_bytes = scan.torn_bytes;
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
