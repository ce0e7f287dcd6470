/* journal_tail.c: following a journal from a position (see journal_tail.h). */
#include "lib/journal_tail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void pki_journal_pos_start(pki_journal_pos *pos) {
  memset(pos, 0, sizeof(*pos));
  pos->segment = 1;
  pos->next_seq = 1;
}

void pki_journal_durable_end(const pki_journal *j, pki_journal_pos *out) {
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  memset(out, 0, sizeof(*out));
  out->segment = st.segment;
  out->offset = st.segment_size;
  out->next_seq = pki_journal_next_seq(j);
  pki_journal_last_hash(j, out->chain);
}

typedef struct tail_read {
  pki_journal_pos *pos;
  size_t max, n;
  pki_journal_replay_fn fn;
  void *ctx;
  int stopped; /* the limit was reached: not an error */
  int failed;  /* |fn| refused */
} tail_read;

/* on_record passes records up to the limits to the caller's callback. */
static int on_record(void *ctx, const pki_journal_record *rec, pki_err *err) {
  tail_read *t = ctx;
  if (t->n >= t->max) {
    t->stopped = 1;
    PKI_ERR(err, PKI_ERR_PRECONDITION, "stopped");
    return 0;
  }
  if (!t->fn(t->ctx, rec, err)) {
    t->failed = 1;
    return 0;
  }
  t->n++;
  t->pos->offset = rec->offset + PKI_JOURNAL_REC_OVERHEAD + rec->len;
  t->pos->next_seq = rec->seq + 1;
  memcpy(t->pos->chain, rec->chain, PKI_JOURNAL_HASH_LEN);
  return 1;
}

static void seg_path(char *out, size_t size, const char *dir, uint64_t n) {
  snprintf(out, size, "%s/%016llx.seg", dir, (unsigned long long)n);
}

/* read_segment reads what it may of segment pos->segment, up to |end| in
 * the durable segment; |*at_end| says that it read all of it. */
static int read_segment(const char *dir, tail_read *t, const pki_journal_pos *end, int *at_end,
                        pki_err *err) {
  pki_journal_pos *pos = t->pos;
  char path[4096];
  seg_path(path, sizeof(path), dir, pos->segment);
  *at_end = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "%s: %s", path, strerror(errno));
    return 0;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    PKI_ERR(err, PKI_ERR_IO, "%s: %s", path, strerror(errno));
    close(fd);
    return 0;
  }
  size_t size = (size_t)sb.st_size;
  if (pos->segment == end->segment) {
    if (size < end->offset) {
      close(fd);
      PKI_ERR(err, PKI_ERR_INVALID, "%s: shorter than its durable end %llu", path,
              (unsigned long long)end->offset);
      return 0;
    }
    size = (size_t)end->offset;
  }
  if (size < PKI_JOURNAL_SEG_HEADER_LEN) {
    close(fd);
    PKI_ERR(err, PKI_ERR_INVALID, "%s: shorter than a segment header", path);
    return 0;
  }
  const uint8_t *data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (data == MAP_FAILED) {
    PKI_ERR(err, PKI_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    return 0;
  }
  int ok = 1;
  if (pos->offset == 0) {
    /* A segment's first record links to the chain its header gives. */
    pki_journal_seg_header h;
    if (!pki_journal_parse_seg_header(data, size, &h, err)) {
      pki_err_prefix(err, "%s: ", path);
      ok = 0;
    } else if (h.segment != pos->segment || h.first_seq != pos->next_seq ||
               memcmp(h.prev_chain, pos->chain, PKI_JOURNAL_HASH_LEN) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: its header does not continue the records before",
              path);
      ok = 0;
    } else {
      pos->offset = PKI_JOURNAL_SEG_HEADER_LEN;
    }
  }
  if (ok) {
    pki_journal_scan scan;
    memset(&scan, 0, sizeof(scan));
    scan.segment = pos->segment;
    scan.offset = pos->offset;
    scan.next_seq = pos->next_seq;
    memcpy(scan.chain, pos->chain, PKI_JOURNAL_HASH_LEN);
    pki_err perr;
    pki_err_clear(&perr);
    if (!pki_journal_parse_records(data, size, &scan, 0, on_record, t, &perr)) {
      if (!t->stopped) {
        *err = perr;
        if (!t->failed) pki_err_prefix(err, "%s: ", path);
        ok = 0;
      }
    } else {
      *at_end = 1;
    }
  }
  munmap((void *)data, size);
  return ok;
}

static int before(const pki_journal_pos *a, const pki_journal_pos *b) {
  return a->segment < b->segment || (a->segment == b->segment && a->offset < b->offset);
}

int pki_journal_tail_read(const char *dir, pki_journal_pos *pos, const pki_journal_pos *end,
                          size_t max, pki_journal_replay_fn fn, void *ctx, size_t *out_n,
                          pki_err *err) {
  tail_read t = {.pos = pos, .max = max, .fn = fn, .ctx = ctx};
  *out_n = 0;
  /* offset 0 is "the first record": the header's end, reached by reading. */
  while (t.n < max && (pos->offset == 0 ? pos->segment <= end->segment : before(pos, end))) {
    int at_end = 0;
    if (!read_segment(dir, &t, end, &at_end, err)) {
      *out_n = t.n;
      return 0;
    }
    if (t.stopped || !at_end) break;
    if (pos->segment >= end->segment) break;
    /* Every record of a segment before the durable one is read: the next
     * ones start the next segment. */
    pos->segment++;
    pos->offset = 0;
  }
  *out_n = t.n;
  return 1;
}
