/* metrics.h: a small Prometheus registry: counters, gauges and histograms
 * with fixed buckets, rendered in the text exposition format 0.0.4.
 *
 * A family is a metric name with its help, type and label names; each set
 * of label values is a child, made on first use and kept for the life of
 * the registry, so a caller may keep the pointer and update it with no
 * look-up. Updates are atomic (relaxed): any thread may update any child,
 * and a scrape reads them without stopping anyone. Making children and
 * rendering take the registry's mutex; updates never do.
 *
 * Families without labels get their one child at registration and show
 * from the start (a counter at 0), except those registered "lazy", which
 * show only once their child is made with pkid_metric_child: a gauge that
 * has no meaning until someone sets it (lb_cert_rotation_success).
 *
 * The metrics package is at the bottom of the server beside ca/: any layer
 * counts. Errors: constructors return NULL (bad argument, out of memory);
 * updates never fail, and a NULL metric is ignored, so that counting never
 * adds an error path to the code that counts. */
#ifndef PKID_SERVER_METRICS_METRICS_H
#define PKID_SERVER_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define PKID_METRICS_MAX_LABELS 4
#define PKID_METRICS_MAX_BUCKETS 24

typedef enum pkid_metric_type {
  PKID_COUNTER,
  PKID_GAUGE,
  PKID_HISTOGRAM,
} pkid_metric_type;

typedef struct pkid_registry pkid_registry;
typedef struct pkid_family pkid_family;
typedef struct pkid_metric pkid_metric; /* one child: a family and label values */

pkid_registry *pkid_registry_new(void);
void pkid_registry_free(pkid_registry *reg);

/* pkid_family_new registers a family. |labels| names its |num_labels|
 * labels; |buckets| are a histogram's upper bounds, increasing (+Inf is
 * implied). Strings are copied. NULL on a bad argument or a name already
 * registered. */
pkid_family *pkid_family_new(pkid_registry *reg, pkid_metric_type type, const char *name,
                             const char *help, const char *const *labels, size_t num_labels,
                             const double *buckets, size_t num_buckets, int lazy);

/* pkid_metric_child returns the child with these label |values| (as many
 * as the family has labels; NULL for none), making it on first use. NULL
 * only when out of memory. */
pkid_metric *pkid_metric_child(pkid_family *fam, const char *const *values);

/* Shorthands for families without labels: the one child. */
pkid_metric *pkid_counter_new(pkid_registry *reg, const char *name, const char *help);
pkid_metric *pkid_gauge_new(pkid_registry *reg, const char *name, const char *help);
pkid_metric *pkid_histogram_new(pkid_registry *reg, const char *name, const char *help,
                                const double *buckets, size_t num_buckets);

/* Updates. NULL |m| is ignored, so optional metrics need no checks. */
void pkid_counter_add(pkid_metric *m, uint64_t n);
void pkid_gauge_set(pkid_metric *m, double v);
void pkid_gauge_add(pkid_metric *m, double v);
void pkid_histogram_observe(pkid_metric *m, double v);

/* Reads, for tests and for code that reports its own numbers. */
uint64_t pkid_counter_value(const pkid_metric *m);
double pkid_gauge_value(const pkid_metric *m);
uint64_t pkid_histogram_count(const pkid_metric *m);

/* pkid_registry_render writes the exposition text of every family, in
 * registration order, children in creation order, into a malloc'd,
 * NUL-terminated buffer. NULL when out of memory. */
char *pkid_registry_render(pkid_registry *reg, size_t *out_len);

/* --- pkid's own metrics ------------------------------------------------- */

/* The results of an OCSP request, the values of pkid_ocsp_requests_total's
 * "result" label. try_later: the on-demand signing budget was spent. */
typedef enum pkid_ocsp_result {
  PKID_OCSP_RESULT_GOOD,
  PKID_OCSP_RESULT_REVOKED,
  PKID_OCSP_RESULT_UNKNOWN,
  PKID_OCSP_RESULT_MALFORMED,
  PKID_OCSP_RESULT_UNAUTHORIZED,
  PKID_OCSP_RESULT_TRY_LATER,
  PKID_OCSP_NUM_RESULTS,
} pkid_ocsp_result;

/* The metrics of a pkid process, made by pkid_metrics_init in one
 * registry. Labelled families are updated through pkid_metric_child;
 * callers on hot paths keep the children they use. */
typedef struct pkid_metrics {
  pkid_registry *reg;
  pkid_family *grpc_requests;          /* pkid_grpc_requests_total{method,code} */
  pkid_family *grpc_request_duration;  /* pkid_grpc_request_duration_seconds{method} */
  pkid_metric *issued;                 /* pkid_issued_total */
  pkid_metric *revoked;                /* pkid_revoked_total */
  pkid_metric *queue_depth;            /* pkid_queue_depth */
  pkid_metric *pipeline_in_flight;     /* pkid_pipeline_in_flight */
  pkid_metric *pipeline_capacity;      /* pkid_pipeline_capacity */
  pkid_metric *worker_batch_size;      /* pkid_worker_batch_size */
  pkid_metric *commit_batch_size;      /* pkid_commit_batch_size */
  pkid_metric *fsync_duration;         /* pkid_fsync_duration_seconds */
  pkid_metric *commit_failures;        /* pkid_journal_commit_failures_total */
  pkid_family *ocsp_requests;          /* pkid_ocsp_requests_total{result} */
  pkid_metric *ocsp_result[PKID_OCSP_NUM_RESULTS]; /* its children */
  pkid_metric *ocsp_response_seconds;  /* pkid_ocsp_response_seconds */
  pkid_metric *ocsp_signed_on_demand;  /* pkid_ocsp_signed_on_demand_total */
  pkid_metric *ocsp_refreshed;         /* pkid_ocsp_refreshed_total */
  /* pkid_ocsp_next_update_earliest_timestamp_seconds; lazy: shown once a
   * sweep has seen a response, so an empty index is not "expired at 0" */
  pkid_family *ocsp_earliest_next_update;
  pkid_metric *connections;            /* pkid_connections */
  pkid_family *conn_refused;           /* pkid_connections_refused_total{reason} */
  pkid_family *limited;                /* pkid_requests_limited_total{reason} */
  pkid_metric *ready;                  /* pkid_ready: what /readyz says, 1 or 0 */
  pkid_family *cert_expiry;            /* cert_expiry_timestamp{cert_name} */
  pkid_family *lb_cert_rotation_success; /* lazy: shown once set */
  /* The fleet (server/fleet/), lazy: shown only on a node with --postgres. */
  pkid_family *fleet_connected;      /* pkid_fleet_connected */
  pkid_family *fleet_lag;            /* pkid_fleet_ship_lag_records */
  pkid_family *fleet_shipped;        /* pkid_fleet_shipped_records_total */
  /* The SIEM feed (server/audit/siem.h), lazy: shown only with --siem. */
  pkid_family *siem_connected;       /* pkid_siem_connected */
  pkid_family *siem_lag;             /* pkid_siem_lag_records */
  pkid_family *siem_sent;            /* pkid_siem_events_sent_total */
  /* CRLs, by issuing CA ("ca") and "kind" (complete, delta): */
  pkid_family *crl_build_seconds;  /* pkid_crl_build_seconds{ca} */
  pkid_family *crl_builds;         /* pkid_crl_builds_total{ca,result} */
  pkid_family *crl_bytes;          /* pkid_crl_bytes{ca,kind} */
  pkid_family *crl_entries;        /* pkid_crl_entries{ca,kind} */
  pkid_family *crl_number;         /* pkid_crl_number{ca} */
  pkid_family *crl_this_update;    /* pkid_crl_this_update_timestamp_seconds{ca,kind} */
  pkid_family *crl_next_update;    /* pkid_crl_next_update_timestamp_seconds{ca,kind} */
  /* CA keys: 1 while the CA's key can sign; a key in a PKCS#11 token
   * (lib/pkcs11.h) is 0 from a failure until pkid has recovered it. */
  pkid_family *ca_key_ready;       /* pkid_ca_key_ready{ca} */
  /* StreamAudit (server/api/audit_stream.h): */
  pkid_metric *audit_streams;      /* pkid_audit_streams_total */
  pkid_metric *audit_streams_open; /* pkid_audit_streams */
  pkid_metric *audit_events;       /* pkid_audit_events_sent_total */
  /* ACME (server/acme/), lazy: shown only with --acme-listen. */
  pkid_family *acme_requests; /* pkid_acme_requests_total{resource,status} */
} pkid_metrics;

/* pkid_m: the process's metrics; all NULL until pkid_metrics_init. */
extern pkid_metrics pkid_m;

/* pkid_metrics_init registers pkid's metrics (once; later calls return 1
 * at once). 0 when out of memory. */
int pkid_metrics_init(void);

/* pkid_metrics_cert_expiry sets cert_expiry_timestamp{cert_name=|name|}
 * to |not_after| (seconds since the epoch): the server's certificate and
 * each CA's, set at start and at reload. */
void pkid_metrics_cert_expiry(const char *name, int64_t not_after);

/* pkid_metrics_ca_key_ready sets pkid_ca_key_ready{ca=|ca|}. */
void pkid_metrics_ca_key_ready(const char *ca, int ready);

/* pkid_metrics_limited counts one request refused by a limit, in
 * pkid_requests_limited_total{reason=|reason|} (reasons are pkid's own
 * words, never a client's). */
void pkid_metrics_limited(const char *reason);

/* pkid_metrics_acme counts an ACME response: the resource ("new-order",
 * "finalize", ...) and its HTTP status. */
void pkid_metrics_acme(const char *resource, int status);

/* pkid_metrics_crl sets the gauges of a CRL that is now served: its
 * size, entries, number and validity (Prometheus computes its age from
 * the thisUpdate timestamp; deploy/prometheus has the alert on it). */
void pkid_metrics_crl(const char *ca, int delta, size_t bytes, size_t entries, uint64_t number,
                      int64_t this_update, int64_t next_update);

/* pkid_metrics_lb_rotation sets lb_cert_rotation_success (1 or 0), which
 * is not exposed before its first setting: until the rotation tooling
 * reports, no value is better than a made-up one. */
void pkid_metrics_lb_rotation(int success);

/* pkid_metrics_fleet sets the fleet's gauges (connected to PostgreSQL,
 * journal records not shipped yet) and counts |shipped| more records. */
void pkid_metrics_fleet(int connected, uint64_t lag, uint64_t shipped);

/* pkid_metrics_siem sets the SIEM feed's gauges (connected to the
 * collector, durable records not confirmed delivered) and counts |sent|
 * more events written to it (sent again after a reconnect included). */
void pkid_metrics_siem(int connected, uint64_t lag, uint64_t sent);

#endif /* PKID_SERVER_METRICS_METRICS_H */
