/* journal_speed measures the journal on this machine's disk: durable
 * appends per second and fdatasync latency for batches of 1, 16, 64 and 256
 * records of 900 bytes (one write and one fdatasync per batch), then replay
 * speed at open and verify speed over 200,000 records, with the page cache
 * warm and with the segments evicted from it. It prints one JSON object.
 *
 * Usage: journal_speed [PARENT_DIR [seconds per batch size, default 2]]
 * The journals go in a fresh directory under PARENT_DIR (default $TMPDIR or
 * /tmp), removed at the end. Run it on the disk pkid will use. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/journal.h"

#define RECORD_BYTES 900
#define REPLAY_RECORDS 200000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noreturn)) static void die(const char *what, const pki_err *err) {
  fprintf(stderr, "journal_speed: %s: %s\n", what, err != NULL ? err->msg : "failed");
  exit(1);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return (double)v[i] / 1e3;
}

/* remove_dir deletes the flat directory of one journal. */
static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
  rmdir(dir);
}

/* evict drops the journal's (clean, synced) pages from the page cache, so
 * that a replay reads from the disk, without touching other files. */
static void evict(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    int fd = openat(dirfd(d), e->d_name, O_RDONLY);
    if (fd < 0) continue;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
  closedir(d);
}

static int count_record(void *ctx, const pki_journal_record *rec, pki_err *err) {
  (void)err;
  uint64_t *n = ctx;
  *n += rec->len;
  return 1;
}

static uint8_t payloads[256][RECORD_BYTES];

static void fill_entries(pki_journal_entry *e, size_t n) {
  for (size_t i = 0; i < n; i++) {
    e[i].type = 1;
    e[i].time = (uint64_t)time(NULL) * 1000000000u;
    e[i].payload = payloads[i];
    e[i].len = RECORD_BYTES;
  }
}

int main(int argc, char **argv) {
  const char *parent = argc > 1 ? argv[1] : getenv("TMPDIR");
  if (parent == NULL || parent[0] == '\0') parent = "/tmp";
  double secs = argc > 2 ? atof(argv[2]) : 2.0;
  char root[PATH_MAX];
  snprintf(root, sizeof(root), "%s/journal_speed.XXXXXX", parent);
  if (mkdtemp(root) == NULL) die("cannot create a directory", NULL);
  for (size_t i = 0; i < 256; i++) {
    for (size_t k = 0; k < RECORD_BYTES; k++) payloads[i][k] = (uint8_t)(i * 7 + k * 13);
  }
  pki_journal_entry entries[256];
  pki_err err;
  char dir[PATH_MAX + 32];

  printf("{\"record_bytes\": %d, \"batches\": [", RECORD_BYTES);
  static const size_t batch_sizes[] = {1, 16, 64, 256};
  for (size_t b = 0; b < 4; b++) {
    size_t batch = batch_sizes[b];
    snprintf(dir, sizeof(dir), "%s/batch%zu", root, batch);
    pki_journal *j = pki_journal_open(dir, NULL, NULL, NULL, &err);
    if (j == NULL) die("open", &err);
    size_t cap = 1 << 16, n = 0;
    uint64_t *fsync_ns = malloc(cap * sizeof(uint64_t));
    uint64_t *append_ns = malloc(cap * sizeof(uint64_t));
    if (fsync_ns == NULL || append_ns == NULL) die("out of memory", NULL);
    fill_entries(entries, batch);
    double start = now_s(), end;
    do {
      double t0 = now_s();
      if (!pki_journal_append(j, entries, batch, &err)) die("append", &err);
      double t1 = now_s();
      pki_journal_stats st;
      pki_journal_get_stats(j, &st);
      if (n < cap) {
        fsync_ns[n] = st.last_fsync_ns;
        append_ns[n] = (uint64_t)((t1 - t0) * 1e9);
        n++;
      }
      end = t1;
    } while (end - start < secs && n < cap);
    pki_journal_stats st;
    pki_journal_get_stats(j, &st);
    pki_journal_close(j);
    qsort(fsync_ns, n, sizeof(uint64_t), cmp_u64);
    qsort(append_ns, n, sizeof(uint64_t), cmp_u64);
    printf("%s\n  {\"batch\": %zu, \"records_per_s\": %.0f, \"batches_per_s\": %.0f, "
           "\"mb_per_s\": %.1f, \"fsync_p50_us\": %.0f, \"fsync_p99_us\": %.0f, "
           "\"append_p50_us\": %.0f, \"append_p99_us\": %.0f}",
           b == 0 ? "" : ",", batch, (double)st.records / (end - start),
           (double)n / (end - start), (double)st.bytes / (end - start) / 1e6,
           pct_us(fsync_ns, n, 0.50), pct_us(fsync_ns, n, 0.99),
           pct_us(append_ns, n, 0.50), pct_us(append_ns, n, 0.99));
    fflush(stdout);
    free(fsync_ns);
    free(append_ns);
    remove_dir(dir);
  }
  printf("],\n");

  /* Replay: 200k records in batches of 256, then a timed open. */
  snprintf(dir, sizeof(dir), "%s/replay", root);
  pki_journal *j = pki_journal_open(dir, NULL, NULL, NULL, &err);
  if (j == NULL) die("open", &err);
  fill_entries(entries, 256);
  for (size_t done = 0; done < REPLAY_RECORDS;) {
    size_t k = REPLAY_RECORDS - done < 256 ? REPLAY_RECORDS - done : 256;
    if (!pki_journal_append(j, entries, k, &err)) die("append", &err);
    done += k;
  }
  pki_journal_stats st;
  pki_journal_get_stats(j, &st);
  double mb = (double)st.bytes / 1e6;
  pki_journal_close(j);

  double replay_s[2], verify_s[2];
  for (int cold = 0; cold < 2; cold++) {
    if (cold) evict(dir);
    uint64_t payload_bytes = 0;
    double t0 = now_s();
    j = pki_journal_open(dir, NULL, count_record, &payload_bytes, &err);
    if (j == NULL) die("reopen", &err);
    replay_s[cold] = now_s() - t0;
    pki_journal_get_stats(j, &st);
    if (st.replayed != REPLAY_RECORDS) die("replay count", NULL);
    pki_journal_close(j);

    if (cold) evict(dir);
    static pki_journal_verify_result res;
    t0 = now_s();
    if (!pki_journal_verify_dir(dir, &res, &err)) die("verify", &err);
    verify_s[cold] = now_s() - t0;
  }
  printf("\"replay\": {\"records\": %d, \"mb\": %.1f, \"warm_s\": %.3f, "
         "\"warm_mb_per_s\": %.0f, \"warm_records_per_s\": %.0f, "
         "\"cold_s\": %.3f, \"cold_mb_per_s\": %.0f, "
         "\"verify_warm_mb_per_s\": %.0f, \"verify_cold_mb_per_s\": %.0f}}\n",
         REPLAY_RECORDS, mb, replay_s[0], mb / replay_s[0],
         REPLAY_RECORDS / replay_s[0], replay_s[1], mb / replay_s[1],
         mb / verify_s[0], mb / verify_s[1]);
  remove_dir(dir);
  rmdir(root);
  return 0;
}
