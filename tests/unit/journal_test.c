#include "lib/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "client/journal_cmd.h"
#include "lib/crc32c.h"
#include "tests/unit/test.h"

static char tmp_root[PATH_MAX];

/* ---- injected faults ----------------------------------------------------
 * Bazel links lib/journal.o and lib/file.o into this binary
 * (--dynamic_mode=off), so their calls to pwrite, fdatasync, fsync and
 * ftruncate bind to the definitions below rather than to libc's. Unarmed,
 * they go straight to the kernel (syscall(2)). An armed fault lets |skip|
 * calls through, then fails the next |times| (-1: every later one) with
 * |err|. For pwrite, |partial| bytes of the first failing call are written
 * for real and that count returned, as a write that meets a full disk
 * comes back short before the next one fails. tests/fault has the same for
 * whole programs (LD_PRELOAD). */
typedef struct fault {
  int skip, times, err;
  size_t partial;
  int hits; /* calls failed (or cut short) so far */
} fault;

static fault fault_pwrite, fault_fdatasync, fault_fsync, fault_ftruncate;

static void arm(fault *f, int skip, int times, int err) {
  memset(f, 0, sizeof(*f));
  f->skip = skip;
  f->times = times;
  f->err = err;
}

static void disarm_all(void) {
  memset(&fault_pwrite, 0, sizeof(fault_pwrite));
  memset(&fault_fdatasync, 0, sizeof(fault_fdatasync));
  memset(&fault_fsync, 0, sizeof(fault_fsync));
  memset(&fault_ftruncate, 0, sizeof(fault_ftruncate));
}

/* fault_hit counts a call and says whether it is to fail. */
static int fault_hit(fault *f) {
  if (f->times == 0) return 0;
  if (f->skip > 0) {
    f->skip--;
    return 0;
  }
  if (f->times > 0) f->times--;
  f->hits++;
  return 1;
}

/* The paths of the descriptors fsync was called on, while logging. */
static char fsync_log[32][PATH_MAX];
static int fsync_log_len, fsync_logging;

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  if (fault_hit(&fault_pwrite)) {
    if (fault_pwrite.partial > 0 && fault_pwrite.partial < n) {
      n = fault_pwrite.partial;
      fault_pwrite.partial = 0;
    } else {
      errno = fault_pwrite.err;
      return -1;
    }
  }
  return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

int fdatasync(int fd) {
  if (fault_hit(&fault_fdatasync)) {
    errno = fault_fdatasync.err;
    return -1;
  }
  return (int)syscall(SYS_fdatasync, fd);
}

int fsync(int fd) {
  if (fsync_logging && fsync_log_len < 32) {
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, fsync_log[fsync_log_len], PATH_MAX - 1);
    if (n > 0) fsync_log[fsync_log_len++][n] = '\0';
  }
  if (fault_hit(&fault_fsync)) {
    errno = fault_fsync.err;
    return -1;
  }
  return (int)syscall(SYS_fsync, fd);
}

int ftruncate(int fd, off_t len) {
  if (fault_hit(&fault_ftruncate)) {
    errno = fault_ftruncate.err;
    return -1;
  }
  return (int)syscall(SYS_ftruncate, fd, len);
}

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

static int path_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
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

/* ten_records makes a fresh journal holding records 1..10, appended in
 * batches of |batch|, and closed: the fixture of the damage tests. */
static int ten_records(char *dir, size_t dir_size, char *seg, size_t seg_size,
                       size_t batch) {
  make_dir(dir, dir_size);
  seg_name(seg, seg_size, dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  if (j == NULL) return 0;
  int ok = append_range(j, 1, 10, batch);
  pki_journal_close(j);
  return ok;
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

/* read_all sees every record of history, across segments and under a
 * snapshot, from the open journal, and refuses a record altered on disk. */
TEST(read_all_reads_history) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir));
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 2000, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 60, 7));
  REQUIRE(pki_journal_snapshot(j, (const uint8_t *)"s", 1, &err));
  pki_journal_close(j);
  j = open_j(dir, 2000, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 0); /* the snapshot covers all of it */
  REQUIRE(append_range(j, 61, 90, 5));
  replay_log all;
  memset(&all, 0, sizeof(all));
  REQUIRE(pki_journal_read_all(j, on_record, &all, &err));
  CHECK(all.count == 90 && all.first == 1 && !all.bad);
  /* The callback's refusal stops it with its error. */
  memset(&all, 0, sizeof(all));
  all.abort_at = 33;
  CHECK(!pki_journal_read_all(j, on_record, &all, &err) && err.code == PKI_ERR_DENIED);
  pki_journal_close(j);
  /* A bit flipped in segment 1 under the snapshot: open does not read it,
   * read_all does and says where. */
  char seg[PATH_MAX + 32];
  seg_name(seg, sizeof(seg), dir, 1);
  REQUIRE(flip_bit(seg, PKI_JOURNAL_SEG_HEADER_LEN + 30, 2));
  j = open_j(dir, 2000, &l, &err);
  REQUIRE(j != NULL);
  memset(&all, 0, sizeof(all));
  CHECK(!pki_journal_read_all(j, on_record, &all, &err) && err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "0000000000000001.seg") != NULL);
  pki_journal_close(j);
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
  REQUIRE(ten_records(dir, sizeof(dir), seg, sizeof(seg), 10));
  replay_log l;
  pki_err err;
  pki_journal *j;
  long good = file_size(seg);
  long zeros[] = {1, 23, 59, 60, 4096, 100000};
  for (size_t k = 0; k < sizeof(zeros) / sizeof(zeros[0]); k++) {
    REQUIRE(truncate(seg, good + zeros[k]) == 0); /* extends with zeros */
    static pki_journal_verify_result res;
    CHECK(pki_journal_verify_dir(dir, &res, &err));
    CHECK(res.torn_bytes == (uint64_t)zeros[k] && res.torn_zeros);
    CHECK(file_size(seg) == good + zeros[k]); /* verify changed nothing */
    j = open_j(dir, 0, &l, &err);
    REQUIRE(j != NULL);
    pki_journal_stats st;
    pki_journal_get_stats(j, &st);
    CHECK(l.count == 10 && st.truncated_bytes == (uint64_t)zeros[k] &&
          st.truncated_zeros);
    pki_journal_close(j);
    CHECK(file_size(seg) == good);
  }
}

/* A flipped bit anywhere in a middle record is corruption: open and verify
 * both fail, naming the segment and the record's offset. */
TEST(bit_flip_in_middle_record_fails) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  REQUIRE(ten_records(dir, sizeof(dir), seg, sizeof(seg), 3));
  replay_log l;
  pki_err err;
  pki_journal *j;
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

/* The last append may be torn: a flipped bit in its final record's
 * payload makes that record a torn tail, cut at open. */
TEST(bit_flip_in_last_record_is_torn) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  REQUIRE(ten_records(dir, sizeof(dir), seg, sizeof(seg), 10));
  replay_log l;
  pki_err err;
  pki_journal *j;
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
  REQUIRE(ten_records(dir, sizeof(dir), seg, sizeof(seg), 10));
  replay_log l;
  pki_err err;
  pki_journal *j;
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
  /* Two appends: damage in the first, under the second, is corruption. */
  REQUIRE(append_range(j, 1, 10, 5));
  uint8_t h[32];
  pki_journal_last_hash(j, h);
  pki_journal_close(j);
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);

  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  REQUIRE(out != NULL);
  CHECK(journal_cmd_verify(out, dir, NULL, NULL, &err));
  fclose(out);
  CHECK(strstr(text, "records:    10") != NULL);
  CHECK(strstr(text, "type   1: 2") != NULL);
  CHECK(strstr(text, "last seq:   10") != NULL);
  CHECK(strstr(text, hex) != NULL);
  free(text);

  REQUIRE(flip_bit(seg, record_offset(3) + 2, 0));
  out = open_memstream(&text, &len);
  REQUIRE(out != NULL);
  CHECK(!journal_cmd_verify(out, dir, NULL, NULL, &err));
  fclose(out);
  char want[64];
  snprintf(want, sizeof(want), "offset:     %ld", record_offset(3));
  CHECK(strstr(text, "FAILED") != NULL && strstr(text, want) != NULL);
  CHECK(strstr(text, "0000000000000001.seg") != NULL);
  free(text);

  out = open_memstream(&text, &len);
  REQUIRE(out != NULL);
  CHECK(!journal_cmd_verify(out, "/nonexistent/journal", NULL, NULL, &err));
  fclose(out);
  free(text);
}

/* append_batch appends records first..last in one batch, keeping |err|. */
static int append_batch(pki_journal *j, uint64_t first, uint64_t last,
                        pki_err *err) {
  static uint8_t bufs[64][300];
  pki_journal_entry e[64];
  size_t n = 0;
  for (uint64_t s = first; s <= last && n < 64; s++, n++) {
    make_payload(s, bufs[n]);
    e[n].type = type_of(s);
    e[n].time = 1000 + s;
    e[n].payload = bufs[n];
    e[n].len = payload_len(s);
  }
  pki_err_clear(err);
  return pki_journal_append(j, e, n, err);
}

static int count_files(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strstr(e->d_name, suffix) != NULL) n++;
  }
  closedir(d);
  return n;
}

/* A failed fdatasync acknowledges nothing, so nothing of it is kept: the
 * segment is cut back to its durable end at once, the journal fails for
 * good, and a restart replays only the records whose appends returned 1.
 * A full disk found by fdatasync is no different: the pages may be gone. */
TEST(failed_sync_cuts_back_and_fails) {
  int errs[] = {EIO, ENOSPC};
  for (size_t k = 0; k < sizeof(errs) / sizeof(errs[0]); k++) {
    disarm_all();
    char dir[PATH_MAX], seg[PATH_MAX + 32];
    make_dir(dir, sizeof(dir));
    seg_name(seg, sizeof(seg), dir, 1);
    replay_log l;
    pki_err err;
    pki_journal *j = open_j(dir, 0, &l, &err);
    REQUIRE(j != NULL);
    REQUIRE(append_range(j, 1, 5, 5));
    CHECK(!pki_journal_failed(j));
    arm(&fault_fdatasync, 0, 1, errs[k]);
    CHECK(!append_batch(j, 6, 8, &err));
    CHECK(err.code == PKI_ERR_IO && strstr(err.msg, "durable end") != NULL);
    CHECK(fault_fdatasync.hits == 1);
    CHECK(pki_journal_failed(j));
    CHECK(file_size(seg) == record_offset(6)); /* cut back at once */
    pki_journal_stats st;
    pki_journal_get_stats(j, &st);
    CHECK(st.segment == 1 && st.segment_size == (uint64_t)record_offset(6));
    CHECK(!append_batch(j, 6, 6, &err));
    CHECK(err.code == PKI_ERR_IO && strstr(err.msg, "refuses") != NULL);
    CHECK(pki_journal_next_seq(j) == 6);
    pki_journal_close(j);

    j = open_j(dir, 0, &l, &err);
    REQUIRE(j != NULL);
    CHECK(l.count == 5 && !l.bad && !pki_journal_failed(j));
    CHECK(append_range(j, 6, 9, 4));
    pki_journal_close(j);
    CHECK(verify_ok(dir, 9));
    CHECK(count_files(dir, ".cut") == 0);
  }
}

/* A write that fails with EIO after part of the batch went out (whole
 * records of it included): cut back, failed, nothing of it replayed. */
TEST(failed_write_cuts_back_and_fails) {
  disarm_all();
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 5, 5));
  arm(&fault_pwrite, 0, 2, EIO);
  fault_pwrite.partial = (size_t)(record_offset(7) - record_offset(6)) + 10;
  CHECK(!append_batch(j, 6, 8, &err));
  CHECK(err.code == PKI_ERR_IO && pki_journal_failed(j));
  CHECK(fault_pwrite.hits == 2);
  CHECK(file_size(seg) == record_offset(6));
  pki_journal_close(j);
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(l.count == 5 && st.truncated_bytes == 0);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 5));
}

/* A full disk (or quota) at write time, before any sync, is only "not
 * now": the partial batch is cut back, the append is PKI_ERR_EXHAUSTED,
 * the journal goes on, and the same records go in once there is space. */
TEST(disk_full_write_is_retryable) {
  int errs[] = {ENOSPC, EDQUOT};
  for (size_t k = 0; k < sizeof(errs) / sizeof(errs[0]); k++) {
    disarm_all();
    char dir[PATH_MAX], seg[PATH_MAX + 32];
    make_dir(dir, sizeof(dir));
    seg_name(seg, sizeof(seg), dir, 1);
    replay_log l;
    pki_err err;
    pki_journal *j = open_j(dir, 0, &l, &err);
    REQUIRE(j != NULL);
    REQUIRE(append_range(j, 1, 5, 5));
    arm(&fault_pwrite, 0, 2, errs[k]);
    fault_pwrite.partial = (size_t)(record_offset(7) - record_offset(6)) + 10;
    CHECK(!append_batch(j, 6, 8, &err));
    CHECK(err.code == PKI_ERR_EXHAUSTED);
    CHECK(strstr(err.msg, errs[k] == ENOSPC ? "disk full" : "quota") != NULL);
    CHECK(!pki_journal_failed(j));
    CHECK(file_size(seg) == record_offset(6));
    CHECK(pki_journal_next_seq(j) == 6);
    pki_journal_stats st;
    pki_journal_get_stats(j, &st);
    CHECK(st.exhausted == 1 && st.records == 5);
    /* Space is back. */
    CHECK(append_batch(j, 6, 8, &err));
    CHECK(append_range(j, 9, 10, 2));
    pki_journal_close(j);
    j = open_j(dir, 0, &l, &err);
    REQUIRE(j != NULL);
    CHECK(l.count == 10 && !l.bad);
    pki_journal_close(j);
    CHECK(verify_ok(dir, 10));
  }
}

/* When the cut itself fails, a cut marker takes the durable end to the next
 * open, which cuts there: the never-acknowledged records stay unreplayed
 * even though they are still in the file. */
TEST(failed_cut_leaves_marker_for_open) {
  disarm_all();
  char dir[PATH_MAX], seg[PATH_MAX + 32], cut[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  snprintf(cut, sizeof(cut), "%s/%016x.cut", dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 5, 5));
  arm(&fault_fdatasync, 0, 1, EIO);
  arm(&fault_ftruncate, 0, 1, EIO);
  CHECK(!append_batch(j, 6, 8, &err));
  CHECK(err.code == PKI_ERR_IO && pki_journal_failed(j));
  CHECK(strstr(err.msg, "cut marker was written") != NULL);
  /* The records are still there, with the zeros written ahead of them. */
  long written = file_size(seg);
  CHECK(written > record_offset(9));
  CHECK(file_size(cut) == 76);
  pki_journal_close(j);

  static pki_journal_verify_result res;
  REQUIRE(pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.cut_marker && res.records == 5 && res.last_seq == 5);
  CHECK(res.torn_bytes == (uint64_t)(written - record_offset(6)));

  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(l.count == 5 && !l.bad);
  CHECK(st.truncated_bytes == (uint64_t)(written - record_offset(6)));
  CHECK(file_size(seg) == record_offset(6) && !path_exists(cut));
  CHECK(append_range(j, 6, 8, 3));
  pki_journal_close(j);
  CHECK(verify_ok(dir, 8));

  /* If the marker cannot be written either, the error says what a restart
   * may see: this append's records, whole, replayed although never
   * acknowledged (journal.h, RECOVERY RULES). */
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  arm(&fault_fdatasync, 0, 1, EIO);
  arm(&fault_ftruncate, 0, 1, EIO);
  arm(&fault_fsync, 0, -1, EIO);
  CHECK(!append_batch(j, 9, 10, &err));
  disarm_all();
  CHECK(err.code == PKI_ERR_IO && strstr(err.msg, "nor write a cut marker"));
  CHECK(count_files(dir, ".cut") == 0);
  pki_journal_close(j);
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 10 && !l.bad);
  pki_journal_close(j);
}

/* A cut marker that does not match the journal, or is damaged, is
 * corruption: open and verify refuse it and name it. */
TEST(bad_cut_marker_fails) {
  disarm_all();
  char dir[PATH_MAX], cut[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  snprintf(cut, sizeof(cut), "%s/%016x.cut", dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 5, 5));
  arm(&fault_fdatasync, 0, 1, EIO);
  arm(&fault_ftruncate, 0, 1, EIO);
  CHECK(!append_batch(j, 6, 8, &err));
  pki_journal_close(j);
  long len;
  uint8_t *m = read_all(cut, &len);
  REQUIRE(m != NULL && len == 76);

  /* The durable end moved back one record, CRC fixed: seq and chain no
   * longer match the record there. */
  uint8_t moved[76];
  memcpy(moved, m, 76);
  uint64_t off = (uint64_t)record_offset(5);
  for (int i = 0; i < 8; i++) moved[24 + i] = (uint8_t)(off >> (56 - 8 * i));
  uint32_t crc = pki_crc32c(0, moved, 72);
  for (int i = 0; i < 4; i++) moved[72 + i] = (uint8_t)(crc >> (24 - 8 * i));
  REQUIRE(write_all_file(cut, moved, 76));
  j = open_j(dir, 0, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "cut marker") != NULL);
  pki_journal_close(j);
  static pki_journal_verify_result res;
  CHECK(!pki_journal_verify_dir(dir, &res, &err));
  CHECK(strcmp(res.bad_file, cut) == 0);

  /* A flipped bit. */
  memcpy(moved, m, 76);
  moved[30] ^= 1;
  REQUIRE(write_all_file(cut, moved, 76));
  j = open_j(dir, 0, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_INVALID && strstr(err.msg, ".cut"));
  pki_journal_close(j);
  CHECK(!pki_journal_verify_dir(dir, &res, &err));
  CHECK(strcmp(res.bad_file, cut) == 0);

  /* The real one works. */
  REQUIRE(write_all_file(cut, m, 76));
  free(m);
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 5);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 5));
}

/* lowest_free_fd: the descriptor the next open would get. */
static int lowest_free_fd(void) {
  int fd = dup(0);
  if (fd >= 0) close(fd);
  return fd;
}

/* Out of descriptors when the next segment is due: the roll has changed
 * nothing, the append is PKI_ERR_EXHAUSTED, and the next one rolls. The
 * limit is real (RLIMIT_NOFILE), so is the EMFILE. */
TEST(roll_without_descriptors_is_retryable) {
  disarm_all();
  char dir[PATH_MAX], seg2[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg2, sizeof(seg2), dir, 2);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  uint64_t next = 1;
  pki_journal_stats st;
  do {
    REQUIRE(append_range(j, next, next, 1));
    next++;
    pki_journal_get_stats(j, &st);
  } while (st.segment_size < 1500);
  REQUIRE(st.segment == 1);

  struct rlimit saved, low;
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  low = saved;
  low.rlim_cur = (rlim_t)lowest_free_fd();
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  int ok = append_batch(j, next, next + 1, &err);
  setrlimit(RLIMIT_NOFILE, &saved);
  CHECK(!ok && err.code == PKI_ERR_EXHAUSTED);
  CHECK(strstr(err.msg, strerror(EMFILE)) != NULL);
  CHECK(!pki_journal_failed(j));
  CHECK(!path_exists(seg2) && count_files(dir, ".tmp") == 0);

  CHECK(append_batch(j, next, next + 1, &err));
  pki_journal_get_stats(j, &st);
  CHECK(st.segment == 2 && st.exhausted == 1);
  next += 2;
  pki_journal_close(j);
  j = open_j(dir, 1500, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == next - 1 && !l.bad);
  pki_journal_close(j);
  CHECK(verify_ok(dir, next - 1));
}

/* A full disk while writing the next segment's header: the same. A failed
 * fsync of it means a failing disk: the journal stops, and a restart
 * finds only the durable records. */
TEST(roll_on_full_disk_is_retryable) {
  disarm_all();
  char dir[PATH_MAX], seg2[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg2, sizeof(seg2), dir, 2);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 1000, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_batch(j, 1, 10, &err));
  arm(&fault_pwrite, 0, 1, ENOSPC); /* the header, the roll's first write */
  CHECK(!append_batch(j, 11, 12, &err));
  CHECK(err.code == PKI_ERR_EXHAUSTED && !pki_journal_failed(j));
  CHECK(strstr(err.msg, "segment 0000000000000002") != NULL);
  CHECK(!path_exists(seg2) && count_files(dir, ".tmp") == 0);
  CHECK(append_batch(j, 11, 12, &err));
  CHECK(path_exists(seg2));

  REQUIRE(append_batch(j, 13, 30, &err)); /* segment 2 is full too */
  arm(&fault_fsync, 0, 1, EIO);
  CHECK(!append_batch(j, 31, 31, &err));
  CHECK(err.code == PKI_ERR_IO && pki_journal_failed(j));
  CHECK(count_files(dir, ".tmp") == 0);
  pki_journal_close(j);
  j = open_j(dir, 1000, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 30 && !l.bad);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 30));
}

/* The journal directory and any parent made for it are synced into their
 * parents: otherwise a crash could lose the directory, segments and all. */
TEST(new_directory_is_durable) {
  disarm_all();
  char parent[PATH_MAX], dir[PATH_MAX + 16];
  make_dir(parent, sizeof(parent));
  snprintf(dir, sizeof(dir), "%s/journal", parent);
  replay_log l;
  pki_err err;
  fsync_log_len = 0;
  fsync_logging = 1;
  pki_journal *j = open_j(dir, 0, &l, &err);
  fsync_logging = 0;
  REQUIRE(j != NULL);
  pki_journal_close(j);
  char root_real[PATH_MAX], parent_real[PATH_MAX];
  REQUIRE(realpath(tmp_root, root_real) != NULL);
  REQUIRE(realpath(parent, parent_real) != NULL);
  int root_synced = 0, parent_synced = 0;
  for (int i = 0; i < fsync_log_len; i++) {
    root_synced |= strcmp(fsync_log[i], root_real) == 0;
    parent_synced |= strcmp(fsync_log[i], parent_real) == 0;
  }
  CHECK(root_synced && parent_synced);
}

/* WRITTEN AHEAD: an append that grows the segment writes zeros after its
 * records, so that the next appends overwrite them without changing the
 * file's size; a roll and a close cut them off, so closed segments hold
 * just their records. */
TEST(zeros_written_ahead_and_cut) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 1, 5, 5));
  long ahead = file_size(seg);
  CHECK(ahead >= record_offset(6) + (1 << 20));
  REQUIRE(append_range(j, 6, 20, 3));
  CHECK(file_size(seg) == ahead); /* overwritten, not grown */
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(st.segment_size == (uint64_t)record_offset(21));
  long len;
  uint8_t *data = read_all(seg, &len);
  REQUIRE(data != NULL);
  int zeros = 1;
  for (long i = record_offset(21); i < len; i++) zeros &= data[i] == 0;
  CHECK(zeros);
  free(data);
  pki_journal_close(j);
  CHECK(file_size(seg) == record_offset(21));

  /* Small segments: each roll leaves the one before holding only records
   * (verify reads closed segments strictly). */
  j = open_j(dir, 4096, &l, &err);
  REQUIRE(j != NULL);
  REQUIRE(append_range(j, 21, 80, 4));
  pki_journal_get_stats(j, &st);
  CHECK(st.segments >= 3);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 80));
  j = open_j(dir, 4096, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_get_stats(j, &st);
  CHECK(l.count == 80 && !l.bad && st.truncated_bytes == 0);
  pki_journal_close(j);
}

/* zero_range overwrites bytes [from, to) of |path| with zeros: a page the
 * disk lost in a power failure. */
static int zero_range(const char *path, long from, long to) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return 0;
  uint8_t z[512];
  memset(z, 0, sizeof(z));
  int ok = 1;
  for (long at = from; ok && at < to; at += (long)sizeof(z)) {
    size_t n = to - at < (long)sizeof(z) ? (size_t)(to - at) : sizeof(z);
    ok = (size_t)syscall(SYS_pwrite64, fd, z, n, (off_t)at) == n;
  }
  close(fd);
  return ok;
}

/* Over zeros written ahead, a power loss may keep any page of the last
 * append and lose others: a hole in it, with whole records after, is a
 * torn tail, cut at the hole. The append was never acknowledged. */
TEST(hole_in_last_append_is_torn) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  REQUIRE(ten_records(dir, sizeof(dir), seg, sizeof(seg), 5));
  replay_log l;
  pki_err err;
  pki_journal *j;
  REQUIRE(zero_range(seg, record_offset(7), record_offset(8)));
  static pki_journal_verify_result res;
  REQUIRE(pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.records == 6 && !res.torn_zeros &&
        res.torn_bytes == (uint64_t)(record_offset(11) - record_offset(7)));
  j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(l.count == 6 && !l.bad);
  CHECK(st.truncated_bytes == (uint64_t)(record_offset(11) - record_offset(7)) &&
        !st.truncated_zeros);
  CHECK(pki_journal_next_seq(j) == 7);
  REQUIRE(append_range(j, 7, 12, 6));
  pki_journal_close(j);
  CHECK(verify_ok(dir, 12));
}

/* The same hole in an append before the last is in one that was
 * acknowledged (the next began only once it was durable): corruption. */
TEST(hole_before_last_append_fails) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  REQUIRE(ten_records(dir, sizeof(dir), seg, sizeof(seg), 5));
  replay_log l;
  pki_err err;
  pki_journal *j;
  REQUIRE(zero_range(seg, record_offset(3), record_offset(4)));
  char want[64];
  snprintf(want, sizeof(want), "offset %ld:", record_offset(3));
  j = open_j(dir, 0, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "0000000000000001.seg") != NULL &&
        strstr(err.msg, want) != NULL);
  pki_journal_close(j);
  static pki_journal_verify_result res;
  CHECK(!pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.bad_offset == (uint64_t)record_offset(3));
}

static void put_be(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* write_v1_segment writes segment 1 as the first format wrote it: version
 * 1, records 1..n with no flags (one append each, or all in one: a
 * version 1 file cannot tell). */
static int write_v1_segment(const char *dir, uint64_t n) {
  char path[PATH_MAX + 32];
  if (mkdir(dir, 0700) != 0) return 0;
  seg_name(path, sizeof(path), dir, 1);
  static uint8_t buf[1 << 16];
  uint8_t *p = buf;
  memcpy(p, "PKIDJRN1", 8);
  uint8_t chain[32] = {0};
  put_be(p + 8, 1, 4);
  put_be(p + 12, 0, 4);
  put_be(p + 16, 1, 8);
  put_be(p + 24, 1, 8);
  memcpy(p + 32, chain, 32);
  put_be(p + 64, pki_crc32c(0, p, 64), 4);
  p += PKI_JOURNAL_SEG_HEADER_LEN;
  for (uint64_t s = 1; s <= n; s++) {
    size_t len = payload_len(s);
    put_be(p, len, 4);
    p[4] = type_of(s);
    p[5] = 0;
    put_be(p + 6, 0, 2);
    put_be(p + 8, s, 8);
    put_be(p + 16, 1000 + s, 8);
    make_payload(s, p + 24);
    SHA256_CTX sha;
    SHA256_Init(&sha);
    SHA256_Update(&sha, chain, 32);
    SHA256_Update(&sha, p, 24 + len);
    SHA256_Final(chain, &sha);
    memcpy(p + 24 + len, chain, 32);
    put_be(p + 56 + len, pki_crc32c(0, p, 56 + len), 4);
    p += PKI_JOURNAL_REC_OVERHEAD + len;
  }
  FILE *f = fopen(path, "wb");
  if (f == NULL) return 0;
  int ok = fwrite(buf, 1, (size_t)(p - buf), f) == (size_t)(p - buf);
  return fclose(f) == 0 && ok;
}

/* A journal from the first format is read as it was, under its stricter
 * torn rule, and the first append goes into a new segment of the current
 * format. */
TEST(version1_segment_is_read_then_rolled) {
  char dir[PATH_MAX], seg1[PATH_MAX + 32], seg2[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg1, sizeof(seg1), dir, 1);
  seg_name(seg2, sizeof(seg2), dir, 2);
  REQUIRE(write_v1_segment(dir, 6));
  CHECK(verify_ok(dir, 6));
  long v1_size = file_size(seg1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  CHECK(l.count == 6 && !l.bad);
  REQUIRE(append_range(j, 7, 9, 3));
  CHECK(path_exists(seg2) && file_size(seg1) == v1_size);
  pki_journal_close(j);
  CHECK(verify_ok(dir, 9));

  /* In version 1 a hole with a whole record after it is corruption. */
  char dir2[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir2, sizeof(dir2));
  seg_name(seg, sizeof(seg), dir2, 1);
  REQUIRE(write_v1_segment(dir2, 6));
  REQUIRE(zero_range(seg, record_offset(5), record_offset(6)));
  j = open_j(dir2, 0, &l, &err);
  CHECK(j == NULL && err.code == PKI_ERR_INVALID);
  pki_journal_close(j);
}

/* A disk too full for the zeros written ahead may still take the records:
 * the append that met it is refused (nothing kept), and the next ones
 * write their records alone. */
TEST(disk_full_for_zeros_takes_records_alone) {
  disarm_all();
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir));
  seg_name(seg, sizeof(seg), dir, 1);
  replay_log l;
  pki_err err;
  pki_journal *j = open_j(dir, 0, &l, &err);
  REQUIRE(j != NULL);
  arm(&fault_pwrite, 0, 1, ENOSPC);
  CHECK(!append_batch(j, 1, 3, &err));
  CHECK(err.code == PKI_ERR_EXHAUSTED && !pki_journal_failed(j));
  CHECK(file_size(seg) == PKI_JOURNAL_SEG_HEADER_LEN);
  CHECK(append_batch(j, 1, 3, &err));
  CHECK(append_batch(j, 4, 5, &err));
  CHECK(file_size(seg) == record_offset(6));
  pki_journal_close(j);
  CHECK(verify_ok(dir, 5));
  disarm_all();
}

int main(void) {
  const char *t = getenv("TEST_TMPDIR");
  snprintf(tmp_root, sizeof(tmp_root), "%s/journal_test.%ld",
           t != NULL ? t : "/tmp", (long)getpid());
  mkdir(tmp_root, 0700);
  RUN(empty_journal);
  RUN(append_reopen_replay_equal);
  RUN(seq_continuity_across_reopen_and_roll);
  RUN(read_all_reads_history);
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
  RUN(failed_sync_cuts_back_and_fails);
  RUN(failed_write_cuts_back_and_fails);
  RUN(disk_full_write_is_retryable);
  RUN(failed_cut_leaves_marker_for_open);
  RUN(bad_cut_marker_fails);
  RUN(roll_without_descriptors_is_retryable);
  RUN(roll_on_full_disk_is_retryable);
  RUN(new_directory_is_durable);
  RUN(zeros_written_ahead_and_cut);
  RUN(hole_in_last_append_is_torn);
  RUN(hole_before_last_append_fails);
  RUN(version1_segment_is_read_then_rolled);
  RUN(disk_full_for_zeros_takes_records_alone);
  return test_finish();
}
