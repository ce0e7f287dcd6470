/* journal_tail_test: following a journal from a position (lib/journal_tail.h):
 * every record once, in order, across segment rolls, never past the durable
 * end; resuming from a saved position; damage found; and a reader thread
 * following an appender thread (also run under ThreadSanitizer). */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/journal.h"
#include "lib/journal_tail.h"
#include "tests/unit/test.h"

static char tmp_root[PATH_MAX];

static void make_dir(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/%s", tmp_root, name);
}

static pki_journal *open_small(const char *dir) {
  pki_err err;
  pki_err_clear(&err);
  /* Small segments: a few dozen records each, so that reads cross rolls. */
  pki_journal_options o = {.segment_bytes = 4096};
  return pki_journal_open(dir, &o, NULL, NULL, &err);
}

static int append_n(pki_journal *j, uint64_t first, size_t n) {
  pki_journal_entry e[16];
  char payload[16][32];
  for (size_t i = 0; i < n; i++) {
    int len = snprintf(payload[i], sizeof(payload[i]), "record %llu",
                       (unsigned long long)(first + i));
    e[i] = (pki_journal_entry){.type = 7, .time = first + i,
                               .payload = (const uint8_t *)payload[i], .len = (size_t)len};
  }
  pki_err err;
  pki_err_clear(&err);
  return pki_journal_append(j, e, n, &err);
}

typedef struct seen {
  uint64_t next; /* the seq expected */
  int bad;
} seen;

static int check_record(void *ctx, const pki_journal_record *r, pki_err *err) {
  (void)err;
  seen *s = ctx;
  char want[32];
  int len = snprintf(want, sizeof(want), "record %llu", (unsigned long long)r->seq);
  if (r->seq != s->next || r->len != (size_t)len || memcmp(r->payload, want, r->len) != 0 ||
      r->type != 7) {
    s->bad = 1;
  }
  s->next = r->seq + 1;
  return 1;
}

TEST(reads_everything_once_across_rolls) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir), "all");
  pki_journal *j = open_small(dir);
  REQUIRE(j != NULL);
  for (uint64_t seq = 1; seq <= 400; seq += 10) REQUIRE(append_n(j, seq, 10));
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  CHECK(st.segments > 5);
  pki_journal_pos pos, end;
  pki_journal_pos_start(&pos);
  pki_journal_durable_end(j, &end);
  CHECK(end.next_seq == 401);
  seen s = {1, 0};
  size_t total = 0, n;
  pki_err err;
  pki_err_clear(&err);
  /* In reads of at most 37: each resumes where the last stopped. */
  for (int i = 0; i < 100; i++) {
    REQUIRE(pki_journal_tail_read(dir, &pos, &end, 37, check_record, &s, &n, &err));
    total += n;
    if (n == 0) break;
    CHECK(n <= 37);
  }
  CHECK(total == 400);
  CHECK(!s.bad && s.next == 401);
  CHECK(pos.next_seq == 401 && pos.segment == end.segment && pos.offset == end.offset);
  /* At the end, nothing more until more is durable. */
  REQUIRE(pki_journal_tail_read(dir, &pos, &end, 100, check_record, &s, &n, &err));
  CHECK(n == 0);
  REQUIRE(append_n(j, 401, 5));
  pki_journal_durable_end(j, &end);
  REQUIRE(pki_journal_tail_read(dir, &pos, &end, 100, check_record, &s, &n, &err));
  CHECK(n == 5 && s.next == 406 && !s.bad);
  pki_journal_close(j);
}

TEST(never_past_the_end_given) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir), "limit");
  pki_journal *j = open_small(dir);
  REQUIRE(j != NULL);
  REQUIRE(append_n(j, 1, 10));
  pki_journal_pos end_at_10, pos;
  pki_journal_durable_end(j, &end_at_10);
  REQUIRE(append_n(j, 11, 10));
  pki_journal_pos_start(&pos);
  seen s = {1, 0};
  size_t n;
  pki_err err;
  pki_err_clear(&err);
  REQUIRE(pki_journal_tail_read(dir, &pos, &end_at_10, 100, check_record, &s, &n, &err));
  CHECK(n == 10 && s.next == 11 && !s.bad);
  pki_journal_close(j);
}

/* A position saved (as the fleet saves it in PostgreSQL) and used by a
 * new reader goes on from there; one that does not match what the journal
 * holds is refused, naming the file. */
TEST(resumes_from_a_saved_position_and_refuses_a_wrong_one) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir), "resume");
  pki_journal *j = open_small(dir);
  REQUIRE(j != NULL);
  REQUIRE(append_n(j, 1, 16));
  REQUIRE(append_n(j, 17, 16));
  pki_journal_pos pos, end, saved;
  pki_journal_pos_start(&pos);
  pki_journal_durable_end(j, &end);
  seen s = {1, 0};
  size_t n;
  pki_err err;
  pki_err_clear(&err);
  REQUIRE(pki_journal_tail_read(dir, &pos, &end, 20, check_record, &s, &n, &err));
  saved = pos;
  seen s2 = {21, 0};
  REQUIRE(pki_journal_tail_read(dir, &saved, &end, 100, check_record, &s2, &n, &err));
  CHECK(n == 12 && s2.next == 33 && !s2.bad);
  pki_journal_pos wrong = pos;
  wrong.chain[0] ^= 1;
  seen s3 = {21, 0};
  CHECK(!pki_journal_tail_read(dir, &wrong, &end, 100, check_record, &s3, &n, &err));
  CHECK(err.code == PKI_ERR_INVALID && strstr(err.msg, ".seg") != NULL);
  pki_journal_close(j);
}

TEST(damage_is_an_error) {
  char dir[PATH_MAX], seg[PATH_MAX + 32];
  make_dir(dir, sizeof(dir), "damage");
  pki_journal *j = open_small(dir);
  REQUIRE(j != NULL);
  REQUIRE(append_n(j, 1, 5));
  pki_journal_pos pos, end;
  pki_journal_durable_end(j, &end);
  pki_journal_close(j);
  snprintf(seg, sizeof(seg), "%s/%016x.seg", dir, 1);
  FILE *f = fopen(seg, "r+b");
  REQUIRE(f != NULL);
  fseek(f, PKI_JOURNAL_SEG_HEADER_LEN + PKI_JOURNAL_REC_HEADER_LEN + 2, SEEK_SET);
  fputc('X', f);
  fclose(f);
  pki_journal_pos_start(&pos);
  seen s = {1, 0};
  size_t n;
  pki_err err;
  pki_err_clear(&err);
  CHECK(!pki_journal_tail_read(dir, &pos, &end, 100, check_record, &s, &n, &err));
  CHECK(err.code == PKI_ERR_INVALID && n == 0);
}

/* An appender thread and a reader thread, the end handed over under a
 * mutex as pkid's committer hands it to the shipper. */
typedef struct shared {
  pthread_mutex_t mu;
  pki_journal_pos end;
  int done;
  const char *dir;
} shared;

static void *append_thread(void *arg) {
  shared *sh = arg;
  pki_journal *j = open_small(sh->dir);
  for (uint64_t seq = 1; j != NULL && seq <= 3000; seq += 15) {
    if (!append_n(j, seq, 15)) break;
    pthread_mutex_lock(&sh->mu);
    pki_journal_durable_end(j, &sh->end);
    pthread_mutex_unlock(&sh->mu);
  }
  pthread_mutex_lock(&sh->mu);
  sh->done = 1;
  pthread_mutex_unlock(&sh->mu);
  pki_journal_close(j);
  return NULL;
}

TEST(follows_an_appender) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof(dir), "follow");
  shared sh = {.dir = dir};
  pthread_mutex_init(&sh.mu, NULL);
  pki_journal_pos_start(&sh.end);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, append_thread, &sh) == 0);
  pki_journal_pos pos;
  pki_journal_pos_start(&pos);
  seen s = {1, 0};
  int ok = 1;
  /* Bounded in time (60 s), not in reads: the appender's pace is the
   * disk's. */
  for (double start = test_now(); ok && test_now() - start < 60;) {
    pthread_mutex_lock(&sh.mu);
    pki_journal_pos end = sh.end;
    int done = sh.done;
    pthread_mutex_unlock(&sh.mu);
    size_t n = 0;
    pki_err err;
    pki_err_clear(&err);
    /* Before the first append the directory may not exist yet. */
    if (end.offset != 0) {
      ok = pki_journal_tail_read(dir, &pos, &end, 50, check_record, &s, &n, &err);
      if (!ok) fprintf(stderr, "  tail: %s\n", err.msg);
    }
    if (done && pos.next_seq == end.next_seq) break;
    if (n == 0) usleep(1000);
  }
  pthread_join(t, NULL);
  CHECK(ok && !s.bad);
  CHECK(s.next == 3001);
  pthread_mutex_destroy(&sh.mu);
}

int main(void) {
  snprintf(tmp_root, sizeof(tmp_root), "%s/journal_tail_XXXXXX",
           getenv("TEST_TMPDIR") != NULL ? getenv("TEST_TMPDIR") : "/tmp");
  if (mkdtemp(tmp_root) == NULL) return 1;
  RUN(reads_everything_once_across_rolls);
  RUN(never_past_the_end_given);
  RUN(resumes_from_a_saved_position_and_refuses_a_wrong_one);
  RUN(damage_is_an_error);
  RUN(follows_an_appender);
  return test_finish();
}
