/* workers_test: the worker pool with the real store and journal.
 *
 * The loop thread submits jobs in waves against the pool's capacity; the
 * workers and the committer move them to the journal with group commit;
 * every job comes back to the loop exactly once, after its record is
 * durable. Run under ThreadSanitizer in CI. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "lib/catalog.h"
#include "lib/journal.h"
#include "server/ca/ca.h"
#include "server/pipeline/job.h"
#include "server/pipeline/workers.h"
#include "server/store/status.h"
#include "server/store/store.h"
#include "tests/unit/test.h"

#define NUM_JOBS 20000
#define CAPACITY 1024

typedef struct harness {
  pkid_workers *workers;
  int done_count[NUM_JOBS];
  size_t done_total;
  size_t submitted;
  size_t refused;
  pkid_store *store;
} harness;

static harness g;

static void on_done(pkid_job *job) {
  size_t i = (size_t)(job->rec.block_first - 1000000) / 10;
  if (i < NUM_JOBS) g.done_count[i]++;
  CHECK(job->ok);
  pkid_store_apply(g.store, &job->rec);
  pkid_job_cleanup(job);
  free(job);
  g.done_total++;
}

/* submit_wave submits until the pool refuses or all are in; the idle
 * handle calls it again as jobs complete. */
static void submit_wave(uv_idle_t *idle) {
  while (g.submitted < NUM_JOBS) {
    pkid_job *job = malloc(sizeof(*job));
    pki_err err;
    pkid_job_init(job, PKI_REC_SERIAL_BLOCK, on_done);
    job->rec.block_first = 1000000 + g.submitted * 10;
    job->rec.block_count = 10;
    if (!pkid_workers_submit(g.workers, job, &err)) {
      CHECK(err.code == PKI_ERR_EXHAUSTED);
      free(job);
      g.refused++;
      break;
    }
    g.submitted++;
  }
  if (g.done_total == NUM_JOBS) {
    /* The pool's async handle keeps the loop alive: stop it here. */
    uv_idle_stop(idle);
    uv_stop(idle->loop);
  }
}

static char g_dir[512];

TEST(jobs_round_trip_through_journal) {
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = pki_catalog_default(&err);
  REQUIRE(cat != NULL);
  pkid_cas cas;
  memset(&cas, 0, sizeof(cas));
  pkid_status *status = pkid_status_new(16);
  pkid_store store;
  REQUIRE(pkid_store_open(&store, g_dir, cat, &cas, status, &(pkid_store_options){.node = 3}, &err));
  g.store = &store;
  uv_loop_t loop;
  uv_loop_init(&loop);
  g.workers = pkid_workers_new(&loop, 2, CAPACITY, &cas, pkid_jobs_commit, &store, &err);
  REQUIRE(g.workers != NULL);
  uv_idle_t idle;
  uv_idle_init(&loop, &idle);
  uv_idle_start(&idle, submit_wave);
  /* Bounded: the idle handle stops once every job is back. */
  uv_run(&loop, UV_RUN_DEFAULT);
  pkid_workers_stats stats;
  pkid_workers_stats_get(g.workers, &stats);
  pkid_workers_free(g.workers);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  CHECK(g.done_total == NUM_JOBS);
  int once = 1;
  for (size_t i = 0; i < NUM_JOBS; i++) once &= g.done_count[i] == 1;
  CHECK(once);
  /* Submission refused at capacity instead of blocking... */
  CHECK(g.refused > 0);
  /* ...and the committer grouped jobs: far fewer fsyncs than jobs. */
  CHECK(stats.commit_batches > 0 && stats.commit_batches < NUM_JOBS / 4);
  CHECK(stats.jobs_done == NUM_JOBS);
  CHECK(store.reserved_end == 1000000 + (uint64_t)NUM_JOBS * 10);
  pkid_store_close(&store);
  pkid_status_free(status);

  /* Every record is in the journal, in one unbroken chain. */
  pki_journal_verify_result res;
  REQUIRE(pki_journal_verify_dir(g_dir, &res, &err));
  CHECK(res.records == NUM_JOBS);
  CHECK(res.by_type[PKI_REC_SERIAL_BLOCK] == NUM_JOBS);

  /* A restart replays them: the next block starts after the last. */
  status = pkid_status_new(16);
  REQUIRE(pkid_store_open(&store, g_dir, cat, &cas, status, &(pkid_store_options){.node = 3}, &err));
  CHECK(store.reserved_end == 1000000 + (uint64_t)NUM_JOBS * 10);
  uint64_t first = 0;
  CHECK(pkid_store_reserve(&store, 100, &first, &err));
  CHECK(first == 1000000 + (uint64_t)NUM_JOBS * 10);
  pkid_store_close(&store);
  pkid_status_free(status);
  pki_catalog_free(cat);
}

/* --- a commit that fails ---------------------------------------------------------
 * The committer's "not durable: not issued" branch: the third commit fails
 * (as a failed fdatasync would); every job of that batch comes back failed
 * with the commit's error, the others succeed, and the journal holds the
 * records of exactly the jobs that came back ok. */

#define FAIL_JOBS 3000

typedef struct failing {
  pkid_store *store;
  int commits;
  size_t ok, failed;
  pkid_workers *workers;
  size_t submitted, back;
} failing;

static failing f;

static int failing_commit(void *ctx, pkid_job **jobs, size_t n, pki_err *err) {
  (void)ctx;
  if (++f.commits == 3) {
    PKI_ERR(err, PKI_ERR_IO, "injected: fdatasync failed");
    return 0;
  }
  return pkid_jobs_commit(f.store, jobs, n, err);
}

static void on_failing_done(pkid_job *job) {
  if (job->ok) {
    f.ok++;
    pkid_store_apply(f.store, &job->rec);
  } else {
    f.failed++;
    CHECK(job->err.code == PKI_ERR_IO);
    CHECK(strstr(job->err.msg, "injected") != NULL);
  }
  pkid_job_cleanup(job);
  free(job);
  f.back++;
}

static void submit_failing(uv_idle_t *idle) {
  while (f.submitted < FAIL_JOBS) {
    pkid_job *job = malloc(sizeof(*job));
    pki_err err;
    pkid_job_init(job, PKI_REC_SERIAL_BLOCK, on_failing_done);
    job->rec.block_first = 5000000 + f.submitted;
    job->rec.block_count = 1;
    if (!pkid_workers_submit(f.workers, job, &err)) {
      free(job);
      break;
    }
    f.submitted++;
  }
  if (f.back == FAIL_JOBS) {
    uv_idle_stop(idle);
    uv_stop(idle->loop);
  }
}

TEST(failed_commit_answers_nothing_as_done) {
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = pki_catalog_default(&err);
  REQUIRE(cat != NULL);
  pkid_cas cas;
  memset(&cas, 0, sizeof(cas));
  char dir[600];
  snprintf(dir, sizeof(dir), "%s-failing", g_dir);
  pkid_status *status = pkid_status_new(16);
  pkid_store store;
  REQUIRE(pkid_store_open(&store, dir, cat, &cas, status, &(pkid_store_options){.node = 3}, &err));
  f.store = &store;
  uv_loop_t loop;
  uv_loop_init(&loop);
  f.workers = pkid_workers_new(&loop, 2, 256, &cas, failing_commit, NULL, &err);
  REQUIRE(f.workers != NULL);
  uv_idle_t idle;
  uv_idle_init(&loop, &idle);
  uv_idle_start(&idle, submit_failing);
  uv_run(&loop, UV_RUN_DEFAULT);
  pkid_workers_free(f.workers);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  CHECK(f.back == FAIL_JOBS);
  CHECK(f.failed > 0); /* the third batch */
  CHECK(f.ok + f.failed == FAIL_JOBS);
  pkid_store_close(&store);
  pkid_status_free(status);
  /* The journal has a record for each job answered ok, and no other. */
  pki_journal_verify_result res;
  REQUIRE(pki_journal_verify_dir(dir, &res, &err));
  CHECK(res.by_type[PKI_REC_SERIAL_BLOCK] == f.ok);
  pki_catalog_free(cat);
}

int main(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g_dir, sizeof(g_dir), "%s/workers-journal", tmp != NULL ? tmp : "/tmp");
  RUN(jobs_round_trip_through_journal);
  RUN(failed_commit_answers_nothing_as_done);
  return test_finish();
}
