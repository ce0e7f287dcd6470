#include "server/pipeline/crl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "lib/crl.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/pki_tree.h"
#include "server/metrics/metrics.h"

/* After a failed build, the next waits this long. */
#define RETRY_S 5

typedef struct crl_build crl_build;

typedef struct ca_state {
  crl_build *in_flight; /* at most one build per CA at a time */
  int64_t retry_at;     /* after a failure: no build before */
  pkid_metric *build_seconds, *built, *failed;
} ca_state;

struct pkid_crl_builder {
  uv_loop_t *loop;
  pkid_workers *workers;
  pkid_store *store;
  const pkid_cas *cas;
  pkid_crl_options o;
  char *pki_dir; /* NULL: no files */
  uv_timer_t tick;
  int stopping;
  size_t builds; /* in flight */
  ca_state *state;
};

/* One build, from the loop to the thread pool, the worker pool and back.
 * The job comes first: the pipeline hands back a pointer to it. */
struct crl_build {
  pkid_job job;
  pkid_crl_builder *b;
  size_t ca;
  pki_crl_params full_params, delta_params;
  pki_crl_entry *full, *delta;
  size_t num_full, num_delta;
  uint8_t *full_der, *delta_der;
  size_t full_len, delta_len;
  pkid_crl_blob *full_blob, *delta_blob; /* referenced while the files are written */
  int has_delta; /* 0 on the first build: no base to refer to yet */
  uv_work_t work;
  int ok;
  pki_err err;
  uint64_t build_ns;
};

static void free_build(crl_build *cb) {
  free(cb->full);
  free(cb->delta);
  free(cb->full_der);
  free(cb->delta_der);
  pkid_crl_blob_unref(cb->full_blob);
  pkid_crl_blob_unref(cb->delta_blob);
  pkid_job_cleanup(&cb->job);
  free(cb);
}

/* finish ends a build, freeing it: the CA may have its next. */
static void finish(crl_build *cb) {
  pkid_crl_builder *b = cb->b;
  b->state[cb->ca].in_flight = NULL;
  b->builds--;
  free_build(cb);
}

static void fail(crl_build *cb, const char *stage, const pki_err *err) {
  pkid_crl_builder *b = cb->b;
  ca_state *s = &b->state[cb->ca];
  char number[24];
  snprintf(number, sizeof(number), "%llu", (unsigned long long)cb->full_params.number);
  pki_log("warn", "crl_failed", "ca", b->cas->cas[cb->ca].def->name, "number", number, "stage",
          stage, "error", err->msg, NULL);
  pkid_counter_add(s->failed, 1);
  s->retry_at = (int64_t)time(NULL) + RETRY_S;
  finish(cb);
}

/* --- files (thread pool) ----------------------------------------------------------- */

static int write_one(const char *dir, const char *ca, int delta, const pkid_crl_blob *blob,
                     pki_err *err) {
  char path[PKI_PATH_MAX];
  char *pem = NULL;
  size_t pem_len;
  int ok = pki_tree_crl_path(path, sizeof(path), dir, ca, delta, 0, err) &&
           pki_file_write_atomic(path, blob->der, blob->len, 0644, err) &&
           pki_tree_crl_path(path, sizeof(path), dir, ca, delta, 1, err) &&
           pki_crl_to_pem(&pem, &pem_len, blob->der, blob->len, err) &&
           pki_file_write_atomic(path, pem, pem_len, 0644, err);
  free(pem);
  return ok;
}

static void write_work(uv_work_t *work) {
  crl_build *cb = work->data;
  pkid_crl_builder *b = cb->b;
  const char *ca = b->cas->cas[cb->ca].def->name;
  char dir[PKI_PATH_MAX];
  /* The delta first: a reader that sees the new complete CRL finds a
   * delta at least as new beside it. */
  cb->ok = pki_tree_crl_dir(dir, sizeof(dir), b->pki_dir, &cb->err) &&
           pki_mkdirs(dir, 0755, &cb->err) &&
           (cb->delta_blob == NULL || write_one(b->pki_dir, ca, 1, cb->delta_blob, &cb->err)) &&
           write_one(b->pki_dir, ca, 0, cb->full_blob, &cb->err);
}

static void after_write(uv_work_t *work, int status) {
  crl_build *cb = work->data;
  (void)status;
  if (!cb->ok) {
    pki_log("warn", "crl_file_failed", "ca", cb->b->cas->cas[cb->ca].def->name, "error",
            cb->err.msg, NULL);
  }
  finish(cb);
}

/* --- durable: publish ---------------------------------------------------------------- */

static void publish_metrics(const char *ca, const pkid_crl_blob *blob, int delta) {
  pkid_metrics_crl(ca, delta, blob->len, blob->num_entries, blob->number, blob->this_update,
                   blob->next_update);
}

static void on_job_done(pkid_job *job) {
  crl_build *cb = (crl_build *)job;
  pkid_crl_builder *b = cb->b;
  if (!job->ok) {
    fail(cb, "journal", &job->err);
    return;
  }
  /* The record is durable: the CRL state takes it whatever comes next, so
   * that the number is never used again (and the snapshot says so). */
  pkid_store_apply(b->store, &job->rec);
  const pkid_ca *ca = &b->cas->cas[cb->ca];
  cb->full_blob = pkid_crl_blob_new(cb->full_der, cb->full_len, cb->full_params.number,
                                    cb->full_params.this_update, cb->full_params.next_update,
                                    cb->num_full);
  cb->full_der = NULL;
  if (cb->has_delta) {
    cb->delta_blob = pkid_crl_blob_new(cb->delta_der, cb->delta_len, cb->delta_params.number,
                                       cb->delta_params.this_update,
                                       cb->delta_params.next_update, cb->num_delta);
    cb->delta_der = NULL;
  }
  if (cb->full_blob == NULL || (cb->has_delta && cb->delta_blob == NULL)) {
    pki_err err;
    PKI_ERR_OOM(&err);
    fail(cb, "publish", &err);
    return;
  }
  /* Published: the store's references; the build keeps its own for the files. */
  pkid_crl_blob_ref(cb->full_blob);
  if (cb->delta_blob != NULL) pkid_crl_blob_ref(cb->delta_blob);
  pkid_ca_crls_publish(&b->store->crls[cb->ca], cb->full_blob, cb->delta_blob);
  ca_state *s = &b->state[cb->ca];
  pkid_counter_add(s->built, 1);
  pkid_histogram_observe(s->build_seconds, (double)cb->build_ns / 1e9);
  publish_metrics(ca->def->name, cb->full_blob, 0);
  if (cb->delta_blob != NULL) publish_metrics(ca->def->name, cb->delta_blob, 1);
  char number[24], base[24], entries[24], delta_entries[24], bytes[24], ms[24];
  snprintf(number, sizeof(number), "%llu", (unsigned long long)cb->full_params.number);
  snprintf(base, sizeof(base), "%llu", (unsigned long long)cb->delta_params.base_number);
  snprintf(entries, sizeof(entries), "%zu", cb->num_full);
  snprintf(delta_entries, sizeof(delta_entries), "%zu", cb->num_delta);
  snprintf(bytes, sizeof(bytes), "%zu", cb->full_blob->len);
  snprintf(ms, sizeof(ms), "%.1f", (double)cb->build_ns / 1e6);
  pki_log("info", "crl_published", "ca", ca->def->name, "number", number, "base", base,
          "entries", entries, "delta_entries", delta_entries, "bytes", bytes, "build_ms", ms,
          NULL);
  if (b->pki_dir == NULL) {
    finish(cb);
    return;
  }
  cb->work.data = cb;
  if (uv_queue_work(b->loop, &cb->work, write_work, after_write) != 0) finish(cb);
}

/* --- build (thread pool) --------------------------------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void build_work(uv_work_t *work) {
  crl_build *cb = work->data;
  const pki_issuer *issuer = &cb->b->cas->cas[cb->ca].issuer;
  uint64_t t0 = now_ns();
  /* With the key itself: the batched-ECDSA signers belong to the workers. */
  cb->ok = pki_crl_build(&cb->full_der, &cb->full_len, issuer, NULL, &cb->full_params, cb->full,
                         cb->num_full, &cb->err) &&
           (!cb->has_delta || pki_crl_build(&cb->delta_der, &cb->delta_len, issuer, NULL,
                                            &cb->delta_params, cb->delta, cb->num_delta,
                                            &cb->err));
  if (cb->ok) {
    SHA256(cb->full_der, cb->full_len, cb->job.rec.crl_hash);
    /* No delta: its hash stays all zero. */
    if (cb->has_delta) SHA256(cb->delta_der, cb->delta_len, cb->job.rec.crl_delta_hash);
  }
  cb->build_ns = now_ns() - t0;
  free(cb->full);
  free(cb->delta);
  cb->full = cb->delta = NULL;
}

static void after_build(uv_work_t *work, int status) {
  crl_build *cb = work->data;
  pkid_crl_builder *b = cb->b;
  (void)status;
  if (!cb->ok) {
    fail(cb, "sign", &cb->err);
    return;
  }
  if (b->stopping) {
    finish(cb); /* nothing was journaled: the number is free still */
    return;
  }
  pki_err err;
  if (!pkid_workers_submit(b->workers, &cb->job, &err)) {
    fail(cb, "submit", &err);
  }
}

uint64_t pkid_crl_next_number(uint64_t last, uint16_t fleet_node, uint64_t now_ms) {
  if (fleet_node == 0) return last + 1;
  /* 15 bits of node id (1..32767), 48 of milliseconds (until year 10889). */
  uint64_t ms = now_ms & ((UINT64_C(1) << 48) - 1);
  uint64_t after = (last >> 15) + 1;
  if (ms < after) ms = after; /* the clock went back, or two builds in 1 ms */
  return ms << 15 | (fleet_node & 0x7fff);
}

/* start_build picks the entries of CA |i| and sends the build off. */
static void start_build(pkid_crl_builder *b, size_t i, int64_t now) {
  const pkid_ca *ca = &b->cas->cas[i];
  pkid_ca_crls *c = &b->store->crls[i];
  crl_build *cb = calloc(1, sizeof(*cb));
  if (cb == NULL) return; /* the next tick tries again */
  cb->b = b;
  cb->ca = i;
  int new_base = c->base_number == 0 || now >= c->base_this_update + (int64_t)b->o.interval_s;
  uint64_t cut = pkid_ca_crls_cut(c);
  if (!pkid_ca_crls_select(c, cut, &cb->full, &cb->num_full, &cb->delta, &cb->num_delta)) {
    free(cb);
    return;
  }
  /* thisUpdate never goes back, even if the clock does. */
  int64_t this_update = now > c->last_this_update ? now : c->last_this_update;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t number =
      pkid_crl_next_number(c->number, b->o.fleet_node,
                           (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
  cb->full_params = (pki_crl_params){
      .number = number,
      .this_update = this_update,
      .next_update = this_update + (int64_t)b->o.validity_s,
      .freshest_url = ca->def->delta_crl_url,
  };
  cb->delta_params = (pki_crl_params){
      .number = number,
      .this_update = this_update,
      .next_update = this_update + 2 * (int64_t)b->o.delta_interval_s,
      .is_delta = 1,
      .base_number = c->base_number,
  };
  cb->has_delta = c->base_number != 0;
  pkid_job_init(&cb->job, PKI_REC_CRL, on_job_done);
  pkid_job_set_identity(&cb->job, "pkid");
  pkid_record *rec = &cb->job.rec;
  rec->ca = ca;
  rec->crl_number = number;
  /* The base in force from this record on. */
  rec->crl_base = new_base ? number : c->base_number;
  rec->crl_this_update = this_update;
  rec->crl_next_update = cb->full_params.next_update;
  rec->crl_cut = cut;
  rec->crl_entries = (uint32_t)cb->num_full;
  rec->crl_delta_entries = (uint32_t)cb->num_delta;
  cb->work.data = cb;
  if (uv_queue_work(b->loop, &cb->work, build_work, after_build) != 0) {
    free_build(cb);
    return;
  }
  b->state[i].in_flight = cb;
  b->builds++;
}

static void on_tick(uv_timer_t *t) {
  pkid_crl_builder *b = t->data;
  if (b->stopping) return;
  int64_t now = (int64_t)time(NULL);
  for (size_t i = 0; i < b->cas->num_cas; i++) {
    const ca_state *s = &b->state[i];
    const pkid_ca_crls *c = &b->store->crls[i];
    if (s->in_flight != NULL || now < s->retry_at) continue;
    /* No delta yet: the very first build had no base to refer to, so the
     * next tick makes one against it. */
    int due = c->full == NULL || c->delta == NULL || pkid_ca_crls_cut(c) > c->last_cut ||
              now >= c->last_this_update + (int64_t)b->o.delta_interval_s ||
              now >= c->base_this_update + (int64_t)b->o.interval_s;
    if (due) start_build(b, i, now);
  }
}

/* --- life -------------------------------------------------------------------------------- */

pkid_crl_builder *pkid_crl_builder_new(uv_loop_t *loop, pkid_workers *workers, pkid_store *store,
                                       const pkid_cas *cas, const pkid_crl_options *opts,
                                       pki_err *err) {
  pkid_crl_builder *b = calloc(1, sizeof(*b));
  if (b == NULL || (b->state = calloc(cas->num_cas + 1, sizeof(*b->state))) == NULL ||
      (opts->pki_dir != NULL && (b->pki_dir = strdup(opts->pki_dir)) == NULL)) {
    if (b != NULL) free(b->state);
    free(b);
    PKI_ERR_OOM(err);
    return NULL;
  }
  b->loop = loop;
  b->workers = workers;
  b->store = store;
  b->cas = cas;
  b->o = *opts;
  b->o.pki_dir = NULL;
  if (b->o.interval_s == 0) b->o.interval_s = PKID_CRL_INTERVAL_S;
  if (b->o.delta_interval_s == 0) b->o.delta_interval_s = PKID_CRL_DELTA_INTERVAL_S;
  if (b->o.validity_s == 0) b->o.validity_s = PKID_CRL_VALIDITY_S;
  if (b->o.batch_ms == 0) b->o.batch_ms = PKID_CRL_BATCH_MS;
  for (size_t i = 0; i < cas->num_cas; i++) {
    const char *ca[] = {cas->cas[i].def->name};
    const char *ok[] = {cas->cas[i].def->name, "ok"};
    const char *failed[] = {cas->cas[i].def->name, "failed"};
    b->state[i].build_seconds = pkid_metric_child(pkid_m.crl_build_seconds, ca);
    b->state[i].built = pkid_metric_child(pkid_m.crl_builds, ok);
    b->state[i].failed = pkid_metric_child(pkid_m.crl_builds, failed);
  }
  uv_timer_init(loop, &b->tick);
  b->tick.data = b;
  uv_timer_start(&b->tick, on_tick, 0, b->o.batch_ms);
  return b;
}

void pkid_crl_builder_stop(pkid_crl_builder *b) {
  if (b == NULL || b->stopping) return;
  b->stopping = 1;
  uv_timer_stop(&b->tick);
  uv_close((uv_handle_t *)&b->tick, NULL);
}

void pkid_crl_builder_free(pkid_crl_builder *b) {
  if (b == NULL) return;
  /* Builds still out would point here: leave it to the process's end. */
  if (b->builds > 0) return;
  free(b->state);
  free(b->pki_dir);
  free(b);
}
