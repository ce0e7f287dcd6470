/* journal_driver: lib/journal under libfaultfs.so, for journal_fault_test.sh.
 *
 *   journal_driver append DIR SEGMENT_BYTES BATCHES BATCH
 *     opens the journal in DIR and makes BATCHES appends of BATCH records
 *     each, going on after failures, printing one line per append:
 *       "append K ok", or "append K CODE" (the pki_err class: io,
 *       exhausted, ...) followed by " failed" once pki_journal_failed says
 *       so; then "acked N": the records whose appends returned 1.
 *   journal_driver check DIR SEGMENT_BYTES N
 *     opens the journal again (run without faults: a restart) and checks
 *     that it replays exactly records 1..N, each as appended, that no cut
 *     marker is left, and that pki_journal_verify_dir agrees; prints
 *     "replayed N, verified" or why not, and exits 0 or 1.
 *
 * A record's payload is derived from its seq, so check needs no copy. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/journal.h"

#define PAYLOAD 100

static void payload_of(uint64_t seq, uint8_t out[PAYLOAD]) {
  for (int i = 0; i < PAYLOAD; i++) out[i] = (uint8_t)(seq * 31 + (uint64_t)i);
}

static int append(const char *dir, uint64_t seg_bytes, int batches,
                  int batch) {
  pki_journal_options o = {.segment_bytes = seg_bytes, .on_snapshot = NULL};
  pki_err err;
  pki_err_clear(&err);
  pki_journal *j = pki_journal_open(dir, &o, NULL, NULL, &err);
  if (j == NULL) {
    printf("open %s\n", err.msg);
    return 1;
  }
  static uint8_t bufs[64][PAYLOAD];
  pki_journal_entry e[64];
  if (batch < 1 || batch > 64) return 2;
  uint64_t acked = 0;
  for (int k = 1; k <= batches; k++) {
    uint64_t first = pki_journal_next_seq(j);
    for (int i = 0; i < batch; i++) {
      payload_of(first + (uint64_t)i, bufs[i]);
      e[i] = (pki_journal_entry){.type = 1, .time = first + (uint64_t)i,
                                 .payload = bufs[i], .len = PAYLOAD};
    }
    pki_err_clear(&err);
    if (pki_journal_append(j, e, (size_t)batch, &err)) {
      acked += (uint64_t)batch;
      printf("append %d ok\n", k);
    } else {
      printf("append %d %s%s\n", k, pki_err_code_name(err.code),
             pki_journal_failed(j) ? " failed" : "");
      fprintf(stderr, "append %d: %s\n", k, err.msg);
    }
  }
  printf("acked %llu\n", (unsigned long long)acked);
  pki_journal_close(j);
  return 0;
}

typedef struct replay {
  uint64_t count;
  int bad;
} replay;

static int on_record(void *ctx, const pki_journal_record *rec, pki_err *err) {
  (void)err;
  replay *r = ctx;
  uint8_t want[PAYLOAD];
  payload_of(rec->seq, want);
  if (rec->seq != r->count + 1 || rec->type != 1 || rec->time != rec->seq ||
      rec->len != PAYLOAD || memcmp(rec->payload, want, PAYLOAD) != 0) {
    r->bad = 1;
  }
  r->count++;
  return 1;
}

static int cut_markers(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strstr(e->d_name, ".cut") != NULL;
  closedir(d);
  return n;
}

static int check(const char *dir, uint64_t seg_bytes, uint64_t want) {
  pki_journal_options o = {.segment_bytes = seg_bytes, .on_snapshot = NULL};
  pki_err err;
  pki_err_clear(&err);
  replay r = {0, 0};
  pki_journal *j = pki_journal_open(dir, &o, on_record, &r, &err);
  if (j == NULL) {
    printf("open %s\n", err.msg);
    return 1;
  }
  pki_journal_close(j);
  if (r.count != want || r.bad) {
    printf("replayed %llu records (want %llu)%s\n",
           (unsigned long long)r.count, (unsigned long long)want,
           r.bad ? ", some not as appended" : "");
    return 1;
  }
  if (cut_markers(dir) != 0) {
    printf("a cut marker is left\n");
    return 1;
  }
  static pki_journal_verify_result res;
  if (!pki_journal_verify_dir(dir, &res, &err)) {
    printf("verify %s\n", err.msg);
    return 1;
  }
  if (res.records != want || res.torn_bytes != 0) {
    printf("verify found %llu records, %llu torn bytes\n",
           (unsigned long long)res.records,
           (unsigned long long)res.torn_bytes);
    return 1;
  }
  printf("replayed %llu, verified\n", (unsigned long long)want);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "append") == 0) {
    return append(argv[2], strtoull(argv[3], NULL, 10), atoi(argv[4]),
                  atoi(argv[5]));
  }
  if (argc == 5 && strcmp(argv[1], "check") == 0) {
    return check(argv[2], strtoull(argv[3], NULL, 10),
                 strtoull(argv[4], NULL, 10));
  }
  fprintf(stderr,
          "usage: journal_driver append DIR SEGMENT_BYTES BATCHES BATCH\n"
          "       journal_driver check DIR SEGMENT_BYTES N\n");
  return 2;
}
