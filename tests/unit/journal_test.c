#include "lib/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/journal_cmd.h"
#include "lib/crc32c.h"
#include "tests/unit/test.h"

static char tmp_root[PATH_MAX];

/* make_dir names a fresh journal directory under $TEST_TMPDIR for one case;
 * the journal creates it. */
static void make_dir(char *out, size_t out_size) {
  static int counter;
  snprintf(out, out_size, "%s/journal%d", tmp_root, ++counter);
}

static void seg_name(char *out, size_t size, const char *dir, unsigned n) {
  snprintf(out, size, "%s/%016x.seg", dir, n);
}

/* Records are derived from their seq, so replay can be checked without
 * keeping copies: length varies (including 0), content depends on seq. */
static size_t payload_len(uint64_t seq) { return (size_t)((seq * 37) % 300); }

static void make_payload(uint64_t seq, uint8_t *out) {
  for (size_t i = 0; i < payload_len(seq); i++) {
    out[i] = (uint8_t)(seq * 131 + i * 7);
  }
}

static uint8_t type_of(uint64_t seq) { return (uint8_t)(1 + seq % 5); }

/* append_range appends records first..last in batches of |batch|. */
static int append_range(pki_journal *j, uint64_t first, uint64_t last,
                        size_t batch) {
  static uint8_t bufs[256][300];
  pki_journal_entry e[256];
  pki_err err;
  pki_err_clear(&err);
  for (uint64_t s = first; s <= last;) {
    size_t n = 0;
    for (; n < batch && s <= last; n++, s++) {
      make_payload(s, bufs[n]);
      e[n].type = type_of(s);
      e[n].time = 1000 + s;
      e[n].payload = bufs[n];
      e[n].len = payload_len(s);
    }
    if (!pki_journal_append(j, e, n, &err)) {
      fprintf(stderr, "  append: %s\n", err.msg);
      return 0;
    }
  }
  return 1;
}

typedef struct replay_log {
  uint64_t first, count; /* records seen: seqs first..first+count-1 */
  int bad;               /* a record did not match what was appended */
  int snap_calls;
  uint64_t snap_seq;
  char snap_state[64];
  uint64_t abort_at; /* return 0 at this seq, if nonzero */
} replay_log;

static int on_record(void *ctx, const pki_journal_record *rec, pki_err *err) {
  replay_log *l = ctx;
  if (l->count == 0) l->first = rec->seq;
  if (rec->seq != l->first + l->count) l->bad = 1;
  l->count++;
  uint8_t want[300];
  make_payload(rec->seq, want);
  if (rec->type != type_of(rec->seq) || rec->time != 1000 + rec->seq ||
      rec->len != payload_len(rec->seq) ||
      (rec->len > 0 && memcmp(rec->payload, want, rec->len) != 0)) {
    l->bad = 1;
  }
  if (l->abort_at != 0 && rec->seq == l->abort_at) {
    PKI_ERR(err, PKI_ERR_DENIED, "stop at %llu", (unsigned long long)rec->seq);
    return 0;
  }
  return 1;
}

static int on_snapshot(void *ctx, uint64_t seq, const uint8_t *state,
                       size_t len, pki_err *err) {
  (void)err;
  replay_log *l = ctx;
  l->snap_calls++;
  l->snap_seq = seq;
  snprintf(l->snap_state, sizeof(l->snap_state), "%.*s", (int)len,
           (const char *)state);
  return 1;
}

static pki_journal *open_j(const char *dir, uint64_t seg_bytes, replay_log *l,
                           pki_err *err) {
  pki_journal_options o;
  memset(&o, 0, sizeof(o));
  o.segment_bytes = seg_bytes;
  o.on_snapshot = on_snapshot;
  memset(l, 0, sizeof(*l));
  pki_err_clear(err);
  return pki_journal_open(dir, &o, on_record, l, err);
}

static int verify_ok(const char *dir, uint64_t records) {
  static pki_journal_verify_result res;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_journal_verify_dir(dir, &res, &err)) {
    fprintf(stderr, "  verify: %s\n", err.msg);
    return 0;
  }
  return res.records == records && res.last_seq == records;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static uint8_t *read_all(const char *path, long *len) {
  *len = file_size(path);
  FILE *f = fopen(path, "rb");
  if (f == NULL || *len < 0) return NULL;
  uint8_t *p = malloc((size_t)*len + 1);
  if (fread(p, 1, (size_t)*len, f) != (size_t)*len) {
    free(p);
    p = NULL;
  }
  fclose(f);
  return p;
}

static int write_all_file(const char *path, const uint8_t *p, long len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return 0;
  int ok = fwrite(p, 1, (size_t)len, f) == (size_t)len;
  return fclose(f) == 0 && ok;
}

static int flip_bit(const char *path, long off, int bit) {
  int fd = open(path, O_RDWR);
  uint8_t b = 0;
  int ok = fd >= 0 && pread(fd, &b, 1, off) == 1;
  b ^= (uint8_t)(1u << bit);
  ok = ok && pwrite(fd, &b, 1, off) == 1;
  if (fd >= 0) close(fd);
  return ok;
}

/* record_offset: where record |seq| starts in a one-segment journal. */
static long record_offset(uint64_t seq) {
  long off = PKI_JOURNAL_SEG_HEADER_LEN;
  for (uint64_t s = 1; s < seq; s++) off += PKI_JOURNAL_REC_OVERHEAD + (long)payload_len(s);
  return off;
}

TEST(empty_journal) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(pki_journal_next_seq(j) == 1);
  uint8_t h[32], zero[32] = {0};
  pki_journal_last_hash(j, h);
  CHECK(memcmp(h, zero, 32) == 0);
  CHECK(pki_journal_append(j, NULL, 0, &err));
  pki_journal_close(j);
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 0 && pki_journal_next_seq(j) == 1);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 0));
}

TEST(append_reopen_replay_equal) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 1, 1));
  REQUIRE(append_range(j, 2, 17, 16));
  REQUIRE(append_range(j, 18, 100, 64));
  uint8_t h1[32], h2[32];
  pki_journal_last_hash(j, h1);
  CHECK(pki_journal_next_seq(j) == 101);
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(st.records == 100 && st.syncs == 4); /* batches of 1, 16, 64 and 19 */
  pki_journal_close(j);

  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 100 && l.first == 1 && !l.bad);
  CHECK(pki_journal_next_seq(j) == 101);
  pki_journal_last_hash(j, h2);
  CHECK(memcmp(h1, h2, 32) == 0);
  pki_journal_get_stats(j, &st);
  CHECK(st.replayed == 100 && st.truncated_bytes == 0);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 100));
}

TEST(seq_continuity_across_reopen_and_roll) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  uint64_t next = 1;
  for (int round = 0; round < 5; round++) {
    pki_journal *j = open_j(dir, 2000, &l, &err);
    REQUIRE(j != NULL);
    CHECK(l.count == next - 1 && !l.bad);
    CHECK(pki_journal_next_seq(j) == next);
    REQUIRE(append_range(j, next, next + 39, (size_t)(1 + round * 3)));
    next += 40;
    pki_journal_close(j);
  }
  static pki_journal_verify_result res;
  REQUIRE(pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.records == 200 && res.first_seq == 1 && res.last_seq == 200);
  CHECK(res.segments > 5);
  uint64_t sum = 0;
  for (int t = 0; t < 256; t++) sum += res.by_type[t];
  CHECK(sum == 200 && res.by_type[0] == 0 && res.by_type[1] == 40);
}

/* Cut the last record at every length: open keeps the earlier ones, cuts
 * the rest, and the journal goes on. */
TEST(torn_tail_every_offset) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 7, 4));
  pki_journal_close(j);
  long full_len;
  uint8_t *full = read_all(seg, &full_len);
  REQUIRE(full != NULL);
  long start = record_offset(7);
  REQUIRE(full_len == start + PKI_JOURNAL_REC_OVERHEAD + (long)payload_len(7));
  for (long cut = start; cut < full_len; cut++) {
    REQUIRE(write_all_file(seg, full, cut));
    j = open_j(dir, 0, &l, &err);
    if (j == NULL) fprintf(stderr, "  cut %ld: %s\n", cut, err.msg);
    REQUIRE(j != NULL);
    pki_journal_stats st;
    pki_journal_get_stats(j, &st);
    CHECK(l.count == 6 && !l.bad);
    CHECK(st.truncated_bytes == (uint64_t)(cut - start));
    CHECK(file_size(seg) == start);
    CHECK(append_range(j, 7, 7, 1));
    pki_journal_close(j);
    CHECK(verify_ok(dir, 7));
  }
  free(full);
}

TEST(zero_tail_is_torn) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 10));
  pki_journal_close(j);
  long good = file_size(seg);
  long zeros[] = {1, 23, 59, 60, 4096, 100000};
  for (size_t k = 0; k < sizeof(zeros) / sizeof(zeros[0]); k++) {
    REQUIRE(truncate(seg, good + zeros[k]) == 0); /* extends with zeros */
    static pki_journal_verify_result res;
    CHECK(pki_journal_verify_dir(dir, &res, &err));
    CHECK(res.torn_bytes == (uint64_t)zeros[k]);
    CHECK(file_size(seg) == good + zeros[k]); /* verify changed nothing */
    j = open_j(dir, 0, &l, &err);
    REQUIRE(j != NULL);
    pki_journal_stats st;
    pki_journal_get_stats(j, &st);
    CHECK(l.count == 10 && st.truncated_bytes == (uint64_t)zeros[k]);
    pki_journal_close(j);
    CHECK(file_size(seg) == good);
  }
}

/* A flipped bit anywhere in a middle record is corruption: open and verify
 * both fail, naming the segment and the record's offset. */
TEST(bit_flip_in_middle_record_fails) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 3));
  pki_journal_close(j);
  long rec = record_offset(5);
  long rec_end = record_offset(6);
  char want_off[64];
  snprintf(want_off, sizeof(want_off), "offset %ld:", rec);
  for (long off = rec; off < rec_end; off++) {
    int bit = (int)(off % 8);
    REQUIRE(flip_bit(seg, off, bit));
    j = open_j(dir, 0, &l, &err);
    CHECK(j == NULL);
    CHECK(err.code == PKI_ERR_INVALID);
    CHECK(strstr(err.msg, "0000000000000001.seg") != NULL);
    CHECK(strstr(err.msg, want_off) != NULL);
    if (j != NULL || strstr(err.msg, want_off) == NULL) {
      fprintf(stderr, "  byte %ld: %s\n", off, j ? "opened" : err.msg);
      pki_journal_close(j);
    }
    static pki_journal_verify_result res;
    CHECK(!pki_journal_verify_dir(dir, &res, &err));
    CHECK(strcmp(res.bad_file, seg) == 0 && res.bad_offset == (uint64_t)rec);
    REQUIRE(flip_bit(seg, off, bit));
  }
  CHECK(verify_ok(dir, 10));
}

/* Only the final record may be torn, and its CRC decides: a flipped bit in
 * its payload makes it a torn tail, cut at open. */
TEST(bit_flip_in_last_record_is_torn) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 10));
  pki_journal_close(j);
  REQUIRE(payload_len(10) > 0);
  REQUIRE(flip_bit(seg, record_offset(10) + PKI_JOURNAL_REC_HEADER_LEN + 1, 3));
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(l.count == 9 && !l.bad);
  CHECK(st.truncated_bytes == PKI_JOURNAL_REC_OVERHEAD + payload_len(10));
  CHECK(pki_journal_next_seq(j) == 10);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 9));
}

/* A record whose CRC was recomputed after its payload changed passes the
 * CRC but not the chain. */
TEST(tampered_record_breaks_chain) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 10));
  pki_journal_close(j);
  long len;
  uint8_t *data = read_all(seg, &len);
  REQUIRE(data != NULL);
  long rec = record_offset(4);
  size_t plen = payload_len(4);
  REQUIRE(plen > 0);
  data[rec + PKI_JOURNAL_REC_HEADER_LEN] ^= 0x40;
  size_t body = PKI_JOURNAL_REC_HEADER_LEN + plen + PKI_JOURNAL_HASH_LEN;
  uint32_t crc = pki_crc32c(0, data + rec, body);
  for (int i = 0; i < 4; i++) data[rec + (long)body + i] = (uint8_t)(crc >> (24 - 8 * i));
  REQUIRE(write_all_file(seg, data, len));
  free(data);
  j = open_j(dir, 0, &l, &err);
  CHECK(j == NULL);
  CHECK(strstr(err.msg, "chain hash") != NULL);
  pki_journal_close(j);
  static pki_journal_verify_result res;
  CHECK(!pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.bad_offset == (uint64_t)rec);
}

TEST(missing_middle_segment_fails) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 60, 4));
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  REQUIRE(st.segments >= 4);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 60));

  /* A segment moved into the gap under another's name is caught too. */
  char seg3[PATH_MAX + 32];
  seg_name(seg, sizeof(seg), dir, 2);
  seg_name(seg3, sizeof(seg3), dir, 3);
  char saved[PATH_MAX + 40];
  snprintf(saved, sizeof(saved), "%s.saved", seg);
  REQUIRE(rename(seg, saved) == 0);
  j = open_j(dir, 1500, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "0000000000000003.seg") != NULL);
  static pki_journal_verify_result res;
  CHECK(!pki_journal_verify_dir(dir, &res, &err));
  CHECK(strcmp(res.bad_file, seg3) == 0);

  long len;
  uint8_t *data = read_all(seg3, &len);
  REQUIRE(data != NULL);
  CHECK(write_all_file(seg, data, len));
  free(data);
  j = open_j(dir, 1500, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_INVALID);
  CHECK(!pki_journal_verify_dir(dir, &res, &err));
  REQUIRE(rename(saved, seg) == 0);
  CHECK(verify_ok(dir, 60));
}

TEST(bad_segment_header_fails) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 40, 4));
  pki_journal_close(j);
  seg_name(seg, sizeof(seg), dir, 2);
  for (long off = 0; off < PKI_JOURNAL_SEG_HEADER_LEN; off += 5) {
    REQUIRE(flip_bit(seg, off, 1));
    j = open_j(dir, 1500, &l, &err);
    CHECK(j == NULL && strstr(err.msg, "0000000000000002.seg") != NULL);
    pki_journal_close(j);
    REQUIRE(flip_bit(seg, off, 1));
  }
  CHECK(verify_ok(dir, 40));
}

TEST(snapshot_then_appends) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 30, 4));
  REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"state-30", 8, &err));
  REQUIRE(append_range(j, 31, 45, 4));
  pki_journal_close(j);

  j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.snap_calls == 1 && l.snap_seq == 30);
  CHECK(strcmp(l.snap_state, "state-30") == 0);
  CHECK(l.count == 15 && l.first == 31 && !l.bad);
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(st.snapshot_seq == 30 && st.replayed == 15);
  CHECK(pki_journal_next_seq(j) == 46);
  /* A snapshot at the very end: nothing to replay after it. */
  REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"state-45", 8, &err));
  pki_journal_close(j);
  j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.snap_seq == 45 && l.count == 0);
  REQUIRE(append_range(j, 46, 50, 5));
  pki_journal_close(j);

  static pki_journal_verify_result res;
  REQUIRE(pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.records == 50 && res.snapshots == 2 && res.snapshots_bad == 0);

  /* Without a snapshot callback, everything is replayed. */
  memset(&l, 0, sizeof(l));
  j = pki_journal_open(dir, NULL, on_record, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 50 && l.first == 1 && !l.bad && l.snap_calls == 0);
  pki_journal_close(j);
}

TEST(snapshot_of_empty_journal) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"", 0, &err));
  REQUIRE(append_range(j, 1, 5, 5));
  pki_journal_close(j);
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.snap_calls == 1 && l.snap_seq == 0 && l.count == 5 && l.first == 1);
  pki_journal_close(j);
  static pki_journal_verify_result res;
  CHECK(pki_journal_verify_dir(dir, &res, &err) && res.snapshots == 1);
}

TEST(corrupt_snapshot_falls_back) {
  char dir[PATH_MAX], snap10[PATH_MAX + 32], snap20[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  snprintf(snap10, sizeof(snap10), "%s/%016x.snap", dir, 10);
  snprintf(snap20, sizeof(snap20), "%s/%016x.snap", dir, 20);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 4));
  REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"s10", 3, &err));
  REQUIRE(append_range(j, 11, 20, 4));
  REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"s20", 3, &err));
  REQUIRE(append_range(j, 21, 25, 4));
  pki_journal_close(j);

  REQUIRE(flip_bit(snap20, 82, 0)); /* in the state */
  j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.snap_seq == 10 && strcmp(l.snap_state, "s10") == 0);
  CHECK(l.count == 15 && l.first == 11 && !l.bad);
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(st.snapshots_skipped == 1);
  pki_journal_close(j);

  REQUIRE(truncate(snap10, 50) == 0);
  j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.snap_calls == 0 && l.count == 25 && l.first == 1 && !l.bad);
  pki_journal_close(j);
  static pki_journal_verify_result res;
  CHECK(pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.snapshots == 0 && res.snapshots_bad == 2);
}

/* A snapshot with a good hash that disagrees with the journal is tampering,
 * not damage: open refuses it. Here the journal under it was rewritten. */
TEST(snapshot_not_matching_journal_fails) {
  char dir[PATH_MAX], other[PATH_MAX];
  make_dir(dir, sizeof(dir));
  make_dir(other, sizeof(other));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 10));
  REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"s", 1, &err));
  pki_journal_close(j);
  /* The same records with other times in another journal. */
  j = open_j(other, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_entry e = {.type = 1, .time = 7, .payload = NULL, .len = 0};
  for (int i = 0; i < 10; i++) REQUIRE(pki_journal_append(j, &e, 1, &err));
  pki_journal_close(j);
  char a[PATH_MAX + 32], b[PATH_MAX + 32];
  seg_name(a, sizeof(a), other, 1);
  seg_name(b, sizeof(b), dir, 1);
  REQUIRE(rename(a, b) == 0);
  j = open_j(dir, 0, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, ".snap") != NULL);
  pki_journal_close(j);
  static pki_journal_verify_result res;
  CHECK(!pki_journal_verify_dir(dir, &res, &err));
  CHECK(strstr(res.bad_file, ".snap") != NULL);
}

static int count_snapshots(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strstr(e->d_name, ".snap") != NULL) n++;
  }
  closedir(d);
  return n;
}

TEST(old_snapshots_pruned) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  for (uint64_t s = 1; s <= 5; s++) {
    REQUIRE(append_range(j, s, s, 1));
    REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"x", 1, &err));
  }
  CHECK(count_snapshots(dir) == 2);
  pki_journal_close(j);
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.snap_seq == 5 && l.count == 0);
  pki_journal_close(j);
}

/* find_fd finds our descriptor for |path| through /proc/self/fd. */
static int find_fd(const char *path) {
  char real[PATH_MAX];
  if (realpath(path, real) == NULL) return -1;
  for (int fd = 0; fd < 1024; fd++) {
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (strcmp(target, real) == 0) return fd;
  }
  return -1;
}

/* A failed write makes the journal refuse appends for good; reopening
 * recovers. The failure is made by putting a read-only descriptor where the
 * segment's descriptor was. */
TEST(sticky_error_after_failed_write) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 5, 5));
  int fd = find_fd(seg);
  REQUIRE(fd >= 0);
  int ro = open("/dev/null", O_RDONLY);
  REQUIRE(ro >= 0);
  REQUIRE(dup2(ro, fd) == fd);
  close(ro);
  CHECK(!append_range(j, 6, 6, 1));
  pki_err_clear(&err);
  pki_journal_entry e = {.type = 1, .time = 1, .payload = NULL, .len = 0};
  CHECK(!pki_journal_append(j, &e, 1, &err));
  CHECK(err.code == PKI_ERR_IO && strstr(err.msg, "refuses") != NULL);
  CHECK(!pki_journal_snapshot(j, (const uint8_t *)"x", 1, &err));
  CHECK(pki_journal_next_seq(j) == 6);
  pki_journal_close(j);

  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 5 && !l.bad);
  CHECK(append_range(j, 6, 8, 3));
  pki_journal_close(j);
  CHECK(verify_ok(dir, 8));
}

TEST(bad_entries_refused_without_harm) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_entry e = {.type = 0, .time = 1, .payload = NULL, .len = 0};
  CHECK(!pki_journal_append(j, &e, 1, &err) && err.code == PKI_ERR_INVALID);
  static uint8_t big[PKI_JOURNAL_MAX_PAYLOAD + 1];
  e.type = 1;
  e.payload = big;
  e.len = sizeof(big);
  CHECK(!pki_journal_append(j, &e, 1, &err) && err.code == PKI_ERR_INVALID);
  e.len = PKI_JOURNAL_MAX_PAYLOAD; /* the maximum itself is fine */
  CHECK(pki_journal_append(j, &e, 1, &err));
  CHECK(pki_journal_next_seq(j) == 2);
  pki_journal_close(j);
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_close(j);
}

TEST(replay_callback_aborts_open) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 10));
  pki_journal_close(j);
  pki_journal_options o = {.segment_bytes = 0, .on_snapshot = NULL};
  memset(&l, 0, sizeof(l));
  l.abort_at = 4;
  j = pki_journal_open(dir, &o, on_record, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_DENIED && strstr(err.msg, "stop at 4"));
  pki_journal_close(j);
}

TEST(second_open_is_refused) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l, l2;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal *j2 = open_j(dir, 0, &l2, &err);
  CHECK(j2 == NULL && err.code == PKI_ERR_EXISTS);
  pki_journal_close(j2);
  pki_journal_close(j);
  j = open_j(dir, 0, &l, &err);
  CHECK(j != NULL);
  pki_journal_close(j);
}

TEST(verify_command_output) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 10, 10));
  uint8_t h[32];
  pki_journal_last_hash(j, h);
  pki_journal_close(j);
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);

  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  REQUIRE(out != NULL);
  CHECK(journal_cmd_verify(out, dir, &err));
  fclose(out);
  CHECK(strstr(text, "records:    10") != NULL);
  CHECK(strstr(text, "type   1: 2") != NULL);
  CHECK(strstr(text, "last seq:   10") != NULL);
  CHECK(strstr(text, hex) != NULL);
  free(text);

  REQUIRE(flip_bit(seg, record_offset(3) + 2, 0));
  out = open_memstream(&text, &len);
  REQUIRE(out != NULL);
  CHECK(!journal_cmd_verify(out, dir, &err));
  fclose(out);
  char want[64];
  snprintf(want, sizeof(want), "offset:     %ld", record_offset(3));
  CHECK(strstr(text, "FAILED") != NULL && strstr(text, want) != NULL);
  CHECK(strstr(text, "0000000000000001.seg") != NULL);
  free(text);

  out = open_memstream(&text, &len);
  REQUIRE(out != NULL);
  CHECK(!journal_cmd_verify(out, "/nonexistent/journal", &err));
  fclose(out);
  free(text);
}

int main(void) {
  const char *t = getenv("TEST_TMPDIR");
  snprintf(tmp_root, sizeof(tmp_root), "%s/journal_test.%ld",
           t != NULL ? t : "/tmp", (long)getpid());
  mkdir(tmp_root, 0700);
  RUN(empty_journal);
  RUN(append_reopen_replay_equal);
  RUN(seq_continuity_across_reopen_and_roll);
  RUN(torn_tail_every_offset);
  RUN(zero_tail_is_torn);
  RUN(bit_flip_in_middle_record_fails);
  RUN(bit_flip_in_last_record_is_torn);
  RUN(tampered_record_breaks_chain);
  RUN(missing_middle_segment_fails);
  RUN(bad_segment_header_fails);
  RUN(snapshot_then_appends);
  RUN(snapshot_of_empty_journal);
  RUN(corrupt_snapshot_falls_back);
  RUN(snapshot_not_matching_journal_fails);
  RUN(old_snapshots_pruned);
  RUN(sticky_error_after_failed_write);
  RUN(bad_entries_refused_without_harm);
  RUN(replay_callback_aborts_open);
  RUN(second_open_is_refused);
  RUN(verify_command_output);
  return test_finish();
}
