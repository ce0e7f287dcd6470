#include "server/metrics/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pkid_metric {
  pkid_family *fam;
  char *values[PKID_METRICS_MAX_LABELS];
  /* A counter's count, or a gauge's double as bits. */
  _Atomic uint64_t value;
  /* A histogram: per-bucket (not cumulative) counts, the last for +Inf,
   * and the sum as double bits. The count is the buckets' total, so a
   * scrape always sees count == the +Inf bucket. */
  _Atomic uint64_t buckets[PKID_METRICS_MAX_BUCKETS + 1];
  _Atomic uint64_t sum_bits;
  pkid_metric *next;
};

struct pkid_family {
  pkid_registry *reg;
  pkid_metric_type type;
  char *name;
  char *help;
  char *labels[PKID_METRICS_MAX_LABELS];
  size_t num_labels;
  double buckets[PKID_METRICS_MAX_BUCKETS];
  size_t num_buckets;
  pkid_metric *children, *last_child;
  pkid_family *next;
};

struct pkid_registry {
  pthread_mutex_t mu;
  pkid_family *families, *last_family;
};

static uint64_t bits_of(double v) {
  uint64_t b;
  memcpy(&b, &v, sizeof(b));
  return b;
}

static double double_of(uint64_t b) {
  double v;
  memcpy(&v, &b, sizeof(v));
  return v;
}

pkid_registry *pkid_registry_new(void) {
  pkid_registry *reg = calloc(1, sizeof(*reg));
  if (reg == NULL) return NULL;
  pthread_mutex_init(&reg->mu, NULL);
  return reg;
}

static void free_child(pkid_metric *m) {
  for (size_t i = 0; i < PKID_METRICS_MAX_LABELS; i++) free(m->values[i]);
  free(m);
}

static void free_family(pkid_family *f) {
  for (pkid_metric *m = f->children; m != NULL;) {
    pkid_metric *next = m->next;
    free_child(m);
    m = next;
  }
  for (size_t i = 0; i < f->num_labels; i++) free(f->labels[i]);
  free(f->name);
  free(f->help);
  free(f);
}

void pkid_registry_free(pkid_registry *reg) {
  if (reg == NULL) return;
  for (pkid_family *f = reg->families; f != NULL;) {
    pkid_family *next = f->next;
    free_family(f);
    f = next;
  }
  pthread_mutex_destroy(&reg->mu);
  free(reg);
}

/* valid_name: [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no ':'). */
static int valid_name(const char *s, int colon) {
  if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (; *s != '\0'; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || (colon && c == ':'))) {
      return 0;
    }
  }
  return 1;
}

static pkid_metric *child_locked(pkid_family *f, const char *const *values);

pkid_family *pkid_family_new(pkid_registry *reg, pkid_metric_type type, const char *name,
                             const char *help, const char *const *labels, size_t num_labels,
                             const double *buckets, size_t num_buckets, int lazy) {
  if (reg == NULL || !valid_name(name, 1) || num_labels > PKID_METRICS_MAX_LABELS ||
      (type == PKID_HISTOGRAM && (num_buckets == 0 || num_buckets > PKID_METRICS_MAX_BUCKETS))) {
    return NULL;
  }
  for (size_t i = 0; i < num_labels; i++) {
    if (!valid_name(labels[i], 0) || strcmp(labels[i], "le") == 0) return NULL;
  }
  for (size_t i = 1; type == PKID_HISTOGRAM && i < num_buckets; i++) {
    if (!(buckets[i] > buckets[i - 1])) return NULL;
  }
  pkid_family *f = calloc(1, sizeof(*f));
  if (f == NULL) return NULL;
  f->reg = reg;
  f->type = type;
  f->name = strdup(name);
  f->help = strdup(help != NULL ? help : "");
  int ok = f->name != NULL && f->help != NULL;
  for (size_t i = 0; i < num_labels; i++) {
    f->labels[i] = strdup(labels[i]);
    if (f->labels[i] == NULL) ok = 0;
  }
  f->num_labels = num_labels;
  if (type == PKID_HISTOGRAM) {
    memcpy(f->buckets, buckets, num_buckets * sizeof(double));
    f->num_buckets = num_buckets;
  }
  pthread_mutex_lock(&reg->mu);
  for (pkid_family *g = reg->families; ok && g != NULL; g = g->next) {
    if (strcmp(g->name, name) == 0) ok = 0;
  }
  if (ok && num_labels == 0 && !lazy && child_locked(f, NULL) == NULL) ok = 0;
  if (ok) {
    if (reg->last_family != NULL) reg->last_family->next = f;
    else reg->families = f;
    reg->last_family = f;
  }
  pthread_mutex_unlock(&reg->mu);
  if (!ok) {
    free_family(f);
    return NULL;
  }
  return f;
}

static pkid_metric *child_locked(pkid_family *f, const char *const *values) {
  for (pkid_metric *m = f->children; m != NULL; m = m->next) {
    size_t i = 0;
    while (i < f->num_labels && strcmp(m->values[i], values[i]) == 0) i++;
    if (i == f->num_labels) return m;
  }
  pkid_metric *m = calloc(1, sizeof(*m));
  if (m == NULL) return NULL;
  m->fam = f;
  for (size_t i = 0; i < f->num_labels; i++) {
    m->values[i] = strdup(values[i] != NULL ? values[i] : "");
    if (m->values[i] == NULL) {
      free_child(m);
      return NULL;
    }
  }
  if (f->type == PKID_GAUGE) atomic_init(&m->value, bits_of(0.0));
  if (f->last_child != NULL) f->last_child->next = m;
  else f->children = m;
  f->last_child = m;
  return m;
}

pkid_metric *pkid_metric_child(pkid_family *fam, const char *const *values) {
  if (fam == NULL) return NULL;
  pthread_mutex_lock(&fam->reg->mu);
  pkid_metric *m = child_locked(fam, values);
  pthread_mutex_unlock(&fam->reg->mu);
  return m;
}

pkid_metric *pkid_counter_new(pkid_registry *reg, const char *name, const char *help) {
  return pkid_metric_child(pkid_family_new(reg, PKID_COUNTER, name, help, NULL, 0, NULL, 0, 0),
                           NULL);
}

pkid_metric *pkid_gauge_new(pkid_registry *reg, const char *name, const char *help) {
  return pkid_metric_child(pkid_family_new(reg, PKID_GAUGE, name, help, NULL, 0, NULL, 0, 0),
                           NULL);
}

pkid_metric *pkid_histogram_new(pkid_registry *reg, const char *name, const char *help,
                                const double *buckets, size_t num_buckets) {
  return pkid_metric_child(
      pkid_family_new(reg, PKID_HISTOGRAM, name, help, NULL, 0, buckets, num_buckets, 0), NULL);
}

void pkid_counter_add(pkid_metric *m, uint64_t n) {
  if (m != NULL) atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed);
}

void pkid_gauge_set(pkid_metric *m, double v) {
  if (m != NULL) atomic_store_explicit(&m->value, bits_of(v), memory_order_relaxed);
}

/* add_double adds to a double kept as bits, with compare-and-swap. */
static void add_double(_Atomic uint64_t *bits, double v) {
  uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(bits, &old, bits_of(double_of(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

void pkid_gauge_add(pkid_metric *m, double v) {
  if (m != NULL) add_double(&m->value, v);
}

void pkid_histogram_observe(pkid_metric *m, double v) {
  if (m == NULL) return;
  const pkid_family *f = m->fam;
  size_t i = 0;
  while (i < f->num_buckets && v > f->buckets[i]) i++;
  atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
  add_double(&m->sum_bits, v);
}

uint64_t pkid_counter_value(const pkid_metric *m) {
  return m != NULL ? atomic_load_explicit(&((pkid_metric *)m)->value, memory_order_relaxed) : 0;
}

double pkid_gauge_value(const pkid_metric *m) {
  return m != NULL ? double_of(atomic_load_explicit(&((pkid_metric *)m)->value,
                                                    memory_order_relaxed))
                   : 0.0;
}

uint64_t pkid_histogram_count(const pkid_metric *m) {
  uint64_t n = 0;
  if (m == NULL) return 0;
  for (size_t i = 0; i <= m->fam->num_buckets; i++) {
    n += atomic_load_explicit(&((pkid_metric *)m)->buckets[i], memory_order_relaxed);
  }
  return n;
}

/* --- rendering ---------------------------------------------------------------- */

typedef struct text {
  char *data;
  size_t len, cap;
  int failed;
} text;

static void text_add(text *t, const char *s, size_t n) {
  if (t->failed) return;
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap != 0 ? t->cap : 4096;
    while (cap < t->len + n + 1) cap *= 2;
    char *data = realloc(t->data, cap);
    if (data == NULL) {
      t->failed = 1;
      return;
    }
    t->data = data;
    t->cap = cap;
  }
  memcpy(t->data + t->len, s, n);
  t->len += n;
  t->data[t->len] = '\0';
}

static void text_str(text *t, const char *s) { text_add(t, s, strlen(s)); }

/* text_escaped writes |s| with \\, \n and (in label values) \" escaped, as
 * the exposition format asks. */
static void text_escaped(text *t, const char *s, int quote) {
  for (; *s != '\0'; s++) {
    if (*s == '\\') text_str(t, "\\\\");
    else if (*s == '\n') text_str(t, "\\n");
    else if (quote && *s == '"') text_str(t, "\\\"");
    else text_add(t, s, 1);
  }
}

/* format_double writes the shortest text that reads back as |v|, as Go's
 * strconv does for Prometheus: integers without a fraction. */
static void format_double(char out[40], double v) {
  if (isnan(v)) {
    strcpy(out, "NaN");
  } else if (isinf(v)) {
    strcpy(out, v > 0 ? "+Inf" : "-Inf");
  } else if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(out, 40, "%lld", (long long)v);
  } else {
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(out, 40, "%.*g", prec, v);
      if (strtod(out, NULL) == v) break;
    }
  }
}

static void text_labels(text *t, const pkid_metric *m, const char *le) {
  const pkid_family *f = m->fam;
  if (f->num_labels == 0 && le == NULL) return;
  text_str(t, "{");
  for (size_t i = 0; i < f->num_labels; i++) {
    if (i > 0) text_str(t, ",");
    text_str(t, f->labels[i]);
    text_str(t, "=\"");
    text_escaped(t, m->values[i], 1);
    text_str(t, "\"");
  }
  if (le != NULL) {
    if (f->num_labels > 0) text_str(t, ",");
    text_str(t, "le=\"");
    text_str(t, le);
    text_str(t, "\"");
  }
  text_str(t, "}");
}

static void text_sample(text *t, const pkid_metric *m, const char *suffix, const char *le,
                        const char *value) {
  text_str(t, m->fam->name);
  text_str(t, suffix);
  text_labels(t, m, le);
  text_str(t, " ");
  text_str(t, value);
  text_str(t, "\n");
}

static void render_child(text *t, pkid_metric *m) {
  char num[40];
  const pkid_family *f = m->fam;
  switch (f->type) {
    case PKID_COUNTER:
      snprintf(num, sizeof(num), "%llu",
               (unsigned long long)atomic_load_explicit(&m->value, memory_order_relaxed));
      text_sample(t, m, "", NULL, num);
      break;
    case PKID_GAUGE:
      format_double(num, double_of(atomic_load_explicit(&m->value, memory_order_relaxed)));
      text_sample(t, m, "", NULL, num);
      break;
    case PKID_HISTOGRAM: {
      uint64_t cum = 0;
      char le[40];
      for (size_t i = 0; i <= f->num_buckets; i++) {
        cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
        if (i < f->num_buckets) format_double(le, f->buckets[i]);
        else strcpy(le, "+Inf");
        snprintf(num, sizeof(num), "%llu", (unsigned long long)cum);
        text_sample(t, m, "_bucket", le, num);
      }
      format_double(num, double_of(atomic_load_explicit(&m->sum_bits, memory_order_relaxed)));
      text_sample(t, m, "_sum", NULL, num);
      snprintf(num, sizeof(num), "%llu", (unsigned long long)cum);
      text_sample(t, m, "_count", NULL, num);
      break;
    }
  }
}

char *pkid_registry_render(pkid_registry *reg, size_t *out_len) {
  static const char *const kTypes[] = {"counter", "gauge", "histogram"};
  text t = {0};
  text_add(&t, "", 0); /* an empty registry still renders "" */
  pthread_mutex_lock(&reg->mu);
  for (pkid_family *f = reg->families; f != NULL; f = f->next) {
    if (f->children == NULL) continue; /* lazy, not set yet */
    text_str(&t, "# HELP ");
    text_str(&t, f->name);
    text_str(&t, " ");
    text_escaped(&t, f->help, 0);
    text_str(&t, "\n# TYPE ");
    text_str(&t, f->name);
    text_str(&t, " ");
    text_str(&t, kTypes[f->type]);
    text_str(&t, "\n");
    for (pkid_metric *m = f->children; m != NULL; m = m->next) render_child(&t, m);
  }
  pthread_mutex_unlock(&reg->mu);
  if (t.failed) {
    free(t.data);
    return NULL;
  }
  if (out_len != NULL) *out_len = t.len;
  return t.data;
}

/* --- pkid's metrics ------------------------------------------------------------- */

pkid_metrics pkid_m;

static const double kLatency[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double kCrlBuild[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,  0.5,    1,     2.5,  5,     10};
static const double kBatch[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double kFsync[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                0.01,   0.025,   0.05,   0.1,   0.25,   1};
static const double kOcsp[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                0.001,   0.0025,   0.005,   0.01,   0.05,    0.1};

#define N(a) (sizeof(a) / sizeof((a)[0]))

int pkid_metrics_init(void) {
  static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
  static const char *const kMethodCode[] = {"method", "code"};
  static const char *const kMethod[] = {"method"};
  static const char *const kResult[] = {"result"};
  static const char *const kCertName[] = {"cert_name"};
  static const char *const kReason[] = {"reason"};
  static const char *const kCa[] = {"ca"};
  static const char *const kCaKind[] = {"ca", "kind"};
  static const char *const kCaResult[] = {"ca", "result"};
  static const char *const kResults[PKID_OCSP_NUM_RESULTS] = {
      "good", "revoked", "unknown", "malformed", "unauthorized", "try_later"};
  pthread_mutex_lock(&once);
  if (pkid_m.reg != NULL) {
    pthread_mutex_unlock(&once);
    return 1;
  }
  pkid_metrics m;
  memset(&m, 0, sizeof(m));
  m.reg = pkid_registry_new();
  pkid_registry *r = m.reg;
  int ok = r != NULL;
  if (ok) {
    m.grpc_requests = pkid_family_new(r, PKID_COUNTER, "pkid_grpc_requests_total",
                                      "gRPC calls finished, by method and status code.",
                                      kMethodCode, 2, NULL, 0, 0);
    m.grpc_request_duration = pkid_family_new(
        r, PKID_HISTOGRAM, "pkid_grpc_request_duration_seconds",
        "Time from a gRPC call's headers to its trailers.", kMethod, 1, kLatency, N(kLatency), 0);
    m.issued = pkid_counter_new(r, "pkid_issued_total", "Certificates issued and durable.");
    m.revoked = pkid_counter_new(r, "pkid_revoked_total", "Certificates revoked.");
    m.queue_depth = pkid_gauge_new(r, "pkid_queue_depth", "Jobs waiting for a worker.");
    m.pipeline_in_flight = pkid_gauge_new(
        r, "pkid_pipeline_in_flight", "Jobs in the pipeline: queued, signing or committing.");
    m.pipeline_capacity = pkid_gauge_new(
        r, "pkid_pipeline_capacity",
        "Jobs the pipeline holds at most; beyond, calls are refused with RESOURCE_EXHAUSTED "
        "(pkid_requests_limited_total{reason=\"pool_full\"}).");
    m.worker_batch_size = pkid_histogram_new(r, "pkid_worker_batch_size",
                                             "Jobs a worker took at once.", kBatch, N(kBatch));
    m.commit_batch_size = pkid_histogram_new(
        r, "pkid_commit_batch_size", "Jobs made durable by one journal commit.", kBatch,
        N(kBatch));
    m.fsync_duration = pkid_histogram_new(r, "pkid_fsync_duration_seconds",
                                          "Time of one journal fdatasync.", kFsync, N(kFsync));
    m.commit_failures = pkid_counter_new(
        r, "pkid_journal_commit_failures_total",
        "Journal commits that failed (nothing in them was issued); pkid is not ready until "
        "one succeeds, and stops on an fdatasync error.");
    m.ocsp_requests = pkid_family_new(r, PKID_COUNTER, "pkid_ocsp_requests_total",
                                      "OCSP requests answered, by result.", kResult, 1, NULL, 0,
                                      0);
    for (int i = 0; i < PKID_OCSP_NUM_RESULTS; i++) {
      const char *v[] = {kResults[i]};
      m.ocsp_result[i] = pkid_metric_child(m.ocsp_requests, v);
      ok = ok && m.ocsp_result[i] != NULL;
    }
    m.ocsp_response_seconds = pkid_histogram_new(
        r, "pkid_ocsp_response_seconds", "Time to answer one OCSP request, on the loop.", kOcsp,
        N(kOcsp));
    m.ocsp_signed_on_demand = pkid_counter_new(
        r, "pkid_ocsp_signed_on_demand_total", "OCSP responses signed while a client waited.");
    m.ocsp_refreshed = pkid_counter_new(r, "pkid_ocsp_refreshed_total",
                                        "Stored OCSP responses signed again before nextUpdate.");
    m.ocsp_earliest_next_update = pkid_family_new(
        r, PKID_GAUGE, "pkid_ocsp_next_update_earliest_timestamp_seconds",
        "The earliest nextUpdate of the stored OCSP responses of live certificates, as of the "
        "last full refresh sweep, in seconds since the epoch.",
        NULL, 0, NULL, 0, 1);
    m.connections = pkid_gauge_new(r, "pkid_connections", "Open client connections.");
    m.conn_refused = pkid_family_new(
        r, PKID_COUNTER, "pkid_connections_refused_total",
        "gRPC connections closed at accept, or displaced while in their handshake, by reason.",
        kReason, 1, NULL, 0, 0);
    m.limited = pkid_family_new(r, PKID_COUNTER, "pkid_requests_limited_total",
                                "Requests refused by a limit (per identity, per call), "
                                "by reason.",
                                kReason, 1, NULL, 0, 0);
    m.ready = pkid_gauge_new(r, "pkid_ready", "1 while pkid is ready to issue (/readyz).");
    m.cert_expiry = pkid_family_new(r, PKID_GAUGE, "cert_expiry_timestamp",
                                    "notAfter of the server's own certificates, in seconds "
                                    "since the epoch.",
                                    kCertName, 1, NULL, 0, 0);
    m.lb_cert_rotation_success = pkid_family_new(
        r, PKID_GAUGE, "lb_cert_rotation_success",
        "1 if the last load-balancer certificate rotation succeeded, else 0.", NULL, 0, NULL, 0,
        1);
    m.fleet_connected = pkid_family_new(
        r, PKID_GAUGE, "pkid_fleet_connected",
        "1 while this node is connected to the fleet's PostgreSQL (--postgres).", NULL, 0, NULL,
        0, 1);
    m.fleet_lag = pkid_family_new(r, PKID_GAUGE, "pkid_fleet_ship_lag_records",
                                  "Durable journal records not yet shipped to PostgreSQL.", NULL,
                                  0, NULL, 0, 1);
    m.fleet_shipped = pkid_family_new(r, PKID_COUNTER, "pkid_fleet_shipped_records_total",
                                      "Journal records shipped to PostgreSQL.", NULL, 0, NULL, 0,
                                      1);
    m.siem_connected = pkid_family_new(
        r, PKID_GAUGE, "pkid_siem_connected",
        "1 while the SIEM feed is connected to its collector (--siem).", NULL, 0, NULL, 0, 1);
    m.siem_lag = pkid_family_new(r, PKID_GAUGE, "pkid_siem_lag_records",
                                 "Durable journal records not yet confirmed delivered to the "
                                 "SIEM collector.",
                                 NULL, 0, NULL, 0, 1);
    m.siem_sent = pkid_family_new(r, PKID_COUNTER, "pkid_siem_events_sent_total",
                                  "Events written to the SIEM collector, those sent again "
                                  "after a reconnect or restart included.",
                                  NULL, 0, NULL, 0, 1);
    ok = ok && m.siem_connected && m.siem_lag && m.siem_sent;
    m.crl_build_seconds = pkid_family_new(
        r, PKID_HISTOGRAM, "pkid_crl_build_seconds",
        "Time to build and sign one CA's complete and delta CRLs.", kCa, 1, kCrlBuild,
        N(kCrlBuild), 0);
    m.crl_builds = pkid_family_new(r, PKID_COUNTER, "pkid_crl_builds_total",
                                   "CRL builds, by CA and result (ok, failed).", kCaResult, 2,
                                   NULL, 0, 0);
    m.crl_bytes = pkid_family_new(r, PKID_GAUGE, "pkid_crl_bytes",
                                  "Size of the CRL served, DER.", kCaKind, 2, NULL, 0, 0);
    m.crl_entries = pkid_family_new(r, PKID_GAUGE, "pkid_crl_entries",
                                    "Revoked certificates listed in the CRL served.", kCaKind, 2,
                                    NULL, 0, 0);
    m.crl_number = pkid_family_new(r, PKID_GAUGE, "pkid_crl_number",
                                   "cRLNumber of the CRL served.", kCa, 1, NULL, 0, 0);
    m.crl_this_update = pkid_family_new(
        r, PKID_GAUGE, "pkid_crl_this_update_timestamp_seconds",
        "thisUpdate of the CRL served, in seconds since the epoch.", kCaKind, 2, NULL, 0, 0);
    m.crl_next_update = pkid_family_new(
        r, PKID_GAUGE, "pkid_crl_next_update_timestamp_seconds",
        "nextUpdate of the CRL served, in seconds since the epoch.", kCaKind, 2, NULL, 0, 0);
    m.ca_key_ready = pkid_family_new(
        r, PKID_GAUGE, "pkid_ca_key_ready",
        "1 while the CA's key can sign; a key in a PKCS#11 token is 0 from a failure of the "
        "token until pkid has recovered it.",
        kCa, 1, NULL, 0, 0);
    m.audit_streams = pkid_counter_new(
        r, "pkid_audit_streams_total",
        "StreamAudit streams begun (authorized, with a valid filter).");
    m.audit_streams_open = pkid_gauge_new(r, "pkid_audit_streams", "StreamAudit streams open.");
    m.audit_events = pkid_counter_new(r, "pkid_audit_events_sent_total",
                                      "Audit events sent on StreamAudit streams.");
    ok = ok && m.audit_streams && m.audit_streams_open && m.audit_events && m.ca_key_ready;
    static const char *const kResourceStatus[] = {"resource", "status"};
    m.acme_requests = pkid_family_new(r, PKID_COUNTER, "pkid_acme_requests_total",
                                      "ACME responses, by resource and HTTP status.",
                                      kResourceStatus, 2, NULL, 0, 1);
    ok = ok && m.acme_requests;
    ok = ok && m.crl_build_seconds && m.crl_builds && m.crl_bytes && m.crl_entries &&
         m.crl_number && m.crl_this_update && m.crl_next_update;
    ok = ok && m.grpc_requests && m.grpc_request_duration && m.issued && m.revoked &&
         m.queue_depth && m.worker_batch_size && m.commit_batch_size && m.fsync_duration &&
         m.ocsp_requests && m.ocsp_response_seconds && m.ocsp_signed_on_demand &&
         m.ocsp_refreshed && m.connections && m.conn_refused && m.limited && m.ready &&
         m.cert_expiry && m.lb_cert_rotation_success && m.pipeline_in_flight && m.pipeline_capacity && m.fleet_connected && m.fleet_lag &&
         m.fleet_shipped &&
         m.commit_failures && m.ocsp_earliest_next_update;
  }
  if (ok) {
    pkid_m = m;
  } else {
    pkid_registry_free(m.reg);
  }
  pthread_mutex_unlock(&once);
  return ok;
}

void pkid_metrics_crl(const char *ca, int delta, size_t bytes, size_t entries, uint64_t number,
                      int64_t this_update, int64_t next_update) {
  const char *v[] = {ca, delta ? "delta" : "complete"};
  pkid_gauge_set(pkid_metric_child(pkid_m.crl_bytes, v), (double)bytes);
  pkid_gauge_set(pkid_metric_child(pkid_m.crl_entries, v), (double)entries);
  pkid_gauge_set(pkid_metric_child(pkid_m.crl_this_update, v), (double)this_update);
  pkid_gauge_set(pkid_metric_child(pkid_m.crl_next_update, v), (double)next_update);
  if (!delta) pkid_gauge_set(pkid_metric_child(pkid_m.crl_number, v), (double)number);
}

void pkid_metrics_ca_key_ready(const char *ca, int ready) {
  const char *v[] = {ca};
  pkid_gauge_set(pkid_metric_child(pkid_m.ca_key_ready, v), ready ? 1.0 : 0.0);
}

void pkid_metrics_cert_expiry(const char *name, int64_t not_after) {
  const char *v[] = {name};
  pkid_gauge_set(pkid_metric_child(pkid_m.cert_expiry, v), (double)not_after);
}

void pkid_metrics_lb_rotation(int success) {
  pkid_gauge_set(pkid_metric_child(pkid_m.lb_cert_rotation_success, NULL), success ? 1.0 : 0.0);
}

void pkid_metrics_fleet(int connected, uint64_t lag, uint64_t shipped) {
  pkid_gauge_set(pkid_metric_child(pkid_m.fleet_connected, NULL), connected ? 1.0 : 0.0);
  pkid_gauge_set(pkid_metric_child(pkid_m.fleet_lag, NULL), (double)lag);
  pkid_counter_add(pkid_metric_child(pkid_m.fleet_shipped, NULL), shipped);
}

void pkid_metrics_siem(int connected, uint64_t lag, uint64_t sent) {
  pkid_gauge_set(pkid_metric_child(pkid_m.siem_connected, NULL), connected ? 1.0 : 0.0);
  pkid_gauge_set(pkid_metric_child(pkid_m.siem_lag, NULL), (double)lag);
  pkid_counter_add(pkid_metric_child(pkid_m.siem_sent, NULL), sent);
}

void pkid_metrics_acme(const char *resource, int status) {
  char code[8];
  snprintf(code, sizeof(code), "%d", status);
  const char *labels[] = {resource, code};
  pkid_counter_add(pkid_metric_child(pkid_m.acme_requests, labels), 1);
}

void pkid_metrics_limited(const char *reason) {
  const char *labels[] = {reason};
  pkid_counter_add(pkid_metric_child(pkid_m.limited, labels), 1);
}
