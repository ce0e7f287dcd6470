#include "server/http/ocsp_http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/log.h"
#include "server/metrics/metrics.h"
#include "server/http/ocsp_path.h"

/* A DER OCSPRequest from a GET path: the HTTP URI limit bounds it anyway;
 * POST bodies are bounded by the HTTP body limit. */
#define MAX_GET_DER 4096
#define STOP_GRACE_MS 5000

struct pkid_ocsp_http {
  uv_loop_t *loop;
  pkid_http_server *http;
  const pkid_cas *cas;
  pkid_status *status;
  char prefix[256];         /* the responder URL's path, "/" by default */
  uv_timer_t refresh;
  size_t refresh_cursor; /* where the next refresh scan starts */
  /* The earliest nextUpdate of stored responses seen in this sweep of the
   * index (INT64_MAX: none yet), published when the sweep ends. */
  int64_t sweep_earliest;
  /* Token bucket for signing on demand what is not stored. */
  double rate, tokens;
  uint64_t tokens_ms;
  int pending_close;
  void (*done)(void *arg);
  void *done_arg;
};

static const char kContentType[] = "Content-Type: application/ocsp-response\r\n";

static void count(pkid_ocsp_result result, uint64_t t0) {
  pkid_counter_add(pkid_m.ocsp_result[result], 1);
  pkid_histogram_observe(pkid_m.ocsp_response_seconds, (double)(uv_hrtime() - t0) / 1e9);
}

/* take_token spends one on-demand signature from the bucket (burst: one
 * second's worth). */
static int take_token(pkid_ocsp_http *o) {
  uint64_t now = uv_now(o->loop);
  o->tokens += (double)(now - o->tokens_ms) * o->rate / 1000.0;
  if (o->tokens > o->rate) o->tokens = o->rate;
  o->tokens_ms = now;
  if (o->tokens < 1.0) return 0;
  o->tokens -= 1.0;
  return 1;
}

static void answer_error(pkid_http_req *req, pki_ocsp_response_status status,
                         pkid_ocsp_result result, uint64_t t0) {
  size_t len;
  const uint8_t *der = pki_ocsp_error_response(status, &len);
  pkid_http_respond(req, 200, kContentType, der, len);
  count(result, t0);
}

/* serve answers with a signed response and its RFC 5019 cache headers. */
static void serve(pkid_http_req *req, const uint8_t *der, size_t len, int64_t this_update,
                  int64_t next_update, int64_t now) {
  static const char kHex[] = "0123456789abcdef";
  char last_modified[30], expires[30], etag[33], headers[384];
  pkid_http_date(last_modified, this_update);
  pkid_http_date(expires, next_update);
  size_t tail = len < 16 ? len : 16;
  for (size_t i = 0; i < tail; i++) {
    etag[2 * i] = kHex[der[len - tail + i] >> 4];
    etag[2 * i + 1] = kHex[der[len - tail + i] & 15];
  }
  etag[2 * tail] = '\0';
  long long max_age = next_update > now ? (long long)(next_update - now) : 0;
  snprintf(headers, sizeof(headers),
           "%sLast-Modified: %s\r\nExpires: %s\r\n"
           "Cache-Control: max-age=%lld, public, no-transform, must-revalidate\r\n"
           "ETag: \"%s\"\r\n",
           kContentType, last_modified, expires, max_age, etag);
  pkid_http_respond(req, 200, headers, der, len);
}

/* find_ca returns the index of the CA |id| names, or -1. */
static int find_ca(const pkid_ocsp_http *o, const pki_ocsp_cert_id *id) {
  for (size_t i = 0; i < o->cas->num_cas; i++) {
    if (pki_ocsp_cert_id_matches(id, &o->cas->cas[i].ocsp.hashes)) return (int)i;
  }
  return -1;
}

/* sign_and_store signs the response about |rec| for |hash| (with the
 * canonical CertID: it will be served to every client) and stores it. */
static int sign_and_store(pkid_ocsp_http *o, const pkid_cert_record *rec, pki_ocsp_hash hash,
                          int64_t now, pki_err *err) {
  if (rec->ca >= o->cas->num_cas) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "record names CA %u, which is not loaded", rec->ca);
    return 0;
  }
  const pki_ocsp_signer *signer = &o->cas->cas[rec->ca].ocsp;
  pki_ocsp_single s;
  memset(&s, 0, sizeof(s));
  pki_ocsp_cert_id_make(&s.id, &signer->hashes, hash, &rec->serial);
  pkid_cert_record_ocsp(rec, &s);
  s.this_update = now;
  s.next_update = now + PKID_OCSP_VALIDITY_S;
  uint8_t *der;
  size_t len;
  if (!pki_ocsp_signer_sign(signer, &der, &len, &s, 1, err)) return 0;
  if (!pkid_status_set_response(o->status, rec->serial.bytes, rec->serial.len, hash, der, len,
                                s.next_update)) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "the serial is not in the status index");
    return 0;
  }
  return 1;
}

int pkid_ocsp_presign(pkid_ocsp_http *o, const pkid_cert_record *rec, pki_err *err) {
  return sign_and_store(o, rec, PKI_OCSP_HASH_SHA1, (int64_t)time(NULL), err);
}

static void sign_failed(pkid_http_req *req, const pki_err *err, uint64_t t0) {
  pki_log("warn", "ocsp_sign_failed", "error", err->msg, NULL);
  size_t len;
  /* A CA key whose token is away for now: tryLater (RFC 6960 4.2.1). */
  const uint8_t *der = pki_ocsp_error_response(
      err->code == PKI_ERR_UNAVAILABLE ? PKI_OCSP_TRY_LATER : PKI_OCSP_INTERNAL_ERROR, &len);
  pkid_http_respond(req, 200, kContentType, der, len);
  pkid_histogram_observe(pkid_m.ocsp_response_seconds, (double)(uv_hrtime() - t0) / 1e9);
}

static void answer_one(pkid_ocsp_http *o, pkid_http_req *req, int ca,
                       const pki_ocsp_cert_id *id, uint64_t t0) {
  int64_t now = (int64_t)time(NULL);
  pkid_cert_record rec;
  pki_err err;
  if (pkid_status_get(o->status, id->serial, id->serial_len, &rec) && rec.ca == ca) {
    size_t len = 0;
    int64_t next_update = 0;
    const uint8_t *der = pkid_status_response(o->status, id->serial, id->serial_len, id->hash,
                                              &len, &next_update);
    if (der == NULL || next_update - now <= PKID_OCSP_MIN_REMAINING_S) {
      /* Not signed yet for this hash, or about to expire: sign it now. */
      if (!sign_and_store(o, &rec, id->hash, now, &err)) {
        sign_failed(req, &err, t0);
        return;
      }
      pkid_counter_add(pkid_m.ocsp_signed_on_demand, 1);
      der = pkid_status_response(o->status, id->serial, id->serial_len, id->hash, &len,
                                 &next_update);
    }
    serve(req, der, len, next_update - PKID_OCSP_VALIDITY_S, next_update, now);
    count(rec.revoked ? PKID_OCSP_RESULT_REVOKED : PKID_OCSP_RESULT_GOOD, t0);
    return;
  }
  /* A serial we never issued (or one of another CA): signed "unknown",
   * not stored, within the on-demand budget. */
  if (!take_token(o)) {
    answer_error(req, PKI_OCSP_TRY_LATER, PKID_OCSP_RESULT_TRY_LATER, t0);
    return;
  }
  pki_ocsp_single s;
  memset(&s, 0, sizeof(s));
  s.id = *id;
  s.status = PKI_OCSP_UNKNOWN;
  s.revocation_reason = -1;
  s.this_update = now;
  s.next_update = now + PKID_OCSP_UNKNOWN_VALIDITY_S;
  uint8_t *der;
  size_t len;
  if (!pki_ocsp_signer_sign(&o->cas->cas[ca].ocsp, &der, &len, &s, 1, &err)) {
    sign_failed(req, &err, t0);
    return;
  }
  pkid_counter_add(pkid_m.ocsp_signed_on_demand, 1);
  serve(req, der, len, s.this_update, s.next_update, now);
  free(der);
  count(PKID_OCSP_RESULT_UNKNOWN, t0);
}

/* answer_many signs one response about every CertID of the request. */
static void answer_many(pkid_ocsp_http *o, pkid_http_req *req, int ca,
                        const pki_ocsp_request *r, uint64_t t0) {
  if (!take_token(o)) {
    answer_error(req, PKI_OCSP_TRY_LATER, PKID_OCSP_RESULT_TRY_LATER, t0);
    return;
  }
  int64_t now = (int64_t)time(NULL);
  pki_ocsp_single singles[PKI_OCSP_MAX_REQUESTS];
  int64_t next_update = now + PKID_OCSP_VALIDITY_S;
  pkid_ocsp_result result = PKID_OCSP_RESULT_GOOD;
  for (size_t i = 0; i < r->num_ids; i++) {
    pki_ocsp_single *s = &singles[i];
    pkid_cert_record rec;
    memset(s, 0, sizeof(*s));
    s->id = r->ids[i];
    s->this_update = now;
    s->next_update = now + PKID_OCSP_VALIDITY_S;
    s->revocation_reason = -1;
    if (pkid_status_get(o->status, r->ids[i].serial, r->ids[i].serial_len, &rec) &&
        rec.ca == ca) {
      pkid_cert_record_ocsp(&rec, s);
      if (rec.revoked) result = PKID_OCSP_RESULT_REVOKED;
    } else {
      s->status = PKI_OCSP_UNKNOWN;
      s->next_update = now + PKID_OCSP_UNKNOWN_VALIDITY_S;
      next_update = s->next_update;
      if (result == PKID_OCSP_RESULT_GOOD) result = PKID_OCSP_RESULT_UNKNOWN;
    }
  }
  uint8_t *der;
  size_t len;
  pki_err err;
  if (!pki_ocsp_signer_sign(&o->cas->cas[ca].ocsp, &der, &len, singles, r->num_ids, &err)) {
    sign_failed(req, &err, t0);
    return;
  }
  pkid_counter_add(pkid_m.ocsp_signed_on_demand, 1);
  serve(req, der, len, now, next_update, now);
  free(der);
  count(result, t0);
}

static void answer(pkid_ocsp_http *o, pkid_http_req *req, const uint8_t *der, size_t len,
                   uint64_t t0) {
  pki_ocsp_request r;
  pki_err err;
  if (!pki_ocsp_request_parse(&r, der, len, &err)) {
    answer_error(req, PKI_OCSP_MALFORMED_REQUEST, PKID_OCSP_RESULT_MALFORMED, t0);
    return;
  }
  /* Every CertID must name the same one of our CAs: one CA signs. */
  int ca = -1;
  for (size_t i = 0; i < r.num_ids; i++) {
    int c = find_ca(o, &r.ids[i]);
    if (c < 0 || (ca >= 0 && c != ca)) {
      answer_error(req, PKI_OCSP_UNAUTHORIZED, PKID_OCSP_RESULT_UNAUTHORIZED, t0);
      return;
    }
    ca = c;
  }
  if (r.num_ids == 1) {
    answer_one(o, req, ca, &r.ids[0], t0);
  } else {
    answer_many(o, req, ca, &r, t0);
  }
}

static void on_get(void *ctx, pkid_http_req *req) {
  pkid_ocsp_http *o = ctx;
  uint64_t t0 = uv_hrtime();
  uint8_t der[MAX_GET_DER];
  size_t len;
  if (!pkid_ocsp_get_request(der, sizeof(der), &len, req->path, req->path_len, o->prefix)) {
    answer_error(req, PKI_OCSP_MALFORMED_REQUEST, PKID_OCSP_RESULT_MALFORMED, t0);
    return;
  }
  answer(o, req, der, len, t0);
}

/* is_ocsp_request: the media type, any case, parameters ignored. */
static int is_ocsp_request(const char *content_type) {
  static const char kType[] = "application/ocsp-request";
  const size_t n = sizeof(kType) - 1;
  while (*content_type == ' ' || *content_type == '\t') content_type++;
  if (strncasecmp(content_type, kType, n) != 0) return 0;
  char c = content_type[n];
  return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

static void on_post(void *ctx, pkid_http_req *req) {
  pkid_ocsp_http *o = ctx;
  uint64_t t0 = uv_hrtime();
  if (!is_ocsp_request(req->content_type)) {
    static const char kMsg[] = "Content-Type must be application/ocsp-request\n";
    pkid_http_respond(req, 415, "Content-Type: text/plain\r\n", kMsg, sizeof(kMsg) - 1);
    return;
  }
  answer(o, req, req->body, req->body_len, t0);
}

/* --- refresh ------------------------------------------------------------------ */

typedef struct due_response {
  pkid_cert_record rec;
  pki_ocsp_hash hash;
  int64_t next_update; /* of the stored response; 0 when there is none */
} due_response;

typedef struct refresh_scan {
  const pkid_ocsp_http *o;
  int64_t now;
  int64_t earliest; /* the earliest nextUpdate of a stored response seen */
  size_t num_due;
  due_response due[PKID_OCSP_REFRESH_BATCH];
} refresh_scan;

/* scan_record notes the responses of |rec| that need signing: stored ones
 * with less than PKID_OCSP_REFRESH_BEFORE_S left, and a missing SHA-1 one. */
static int scan_record(void *ctx, const pkid_cert_record *rec) {
  refresh_scan *s = ctx;
  if (rec->not_after > s->now && rec->ca < s->o->cas->num_cas) {
    for (int h = 0; h < PKI_OCSP_NUM_HASHES; h++) {
      size_t len;
      int64_t next_update;
      const uint8_t *der = pkid_status_response(s->o->status, rec->serial.bytes, rec->serial.len,
                                                (pki_ocsp_hash)h, &len, &next_update);
      int due = der != NULL ? next_update - s->now < PKID_OCSP_REFRESH_BEFORE_S
                            : h == PKI_OCSP_HASH_SHA1;
      if (due && s->num_due < PKID_OCSP_REFRESH_BATCH) {
        s->due[s->num_due].rec = *rec;
        s->due[s->num_due].hash = (pki_ocsp_hash)h;
        s->due[s->num_due].next_update = der != NULL ? next_update : 0;
        s->num_due++;
      } else if (der != NULL && next_update < s->earliest) {
        s->earliest = next_update; /* stays as it is: counts as it is */
      }
    }
  }
  return s->num_due < PKID_OCSP_REFRESH_BATCH;
}

static void on_refresh(uv_timer_t *t) {
  pkid_ocsp_http *o = t->data;
  refresh_scan *s = malloc(sizeof(*s));
  if (s == NULL) return;
  s->o = o;
  s->now = (int64_t)time(NULL);
  s->earliest = INT64_MAX;
  s->num_due = 0;
  /* A bounded slice per tick, resumed at the cursor: the loop never waits
   * on a walk of the whole index. */
  size_t from = o->refresh_cursor;
  pkid_status_foreach_from(o->status, &o->refresh_cursor, PKID_OCSP_REFRESH_SCAN, scan_record,
                           s);
  size_t i = 0;
  for (; i < s->num_due; i++) {
    pki_err err;
    if (!sign_and_store(o, &s->due[i].rec, s->due[i].hash, s->now, &err)) {
      pki_log("warn", "ocsp_refresh_failed", "error", err.msg, NULL);
      break;
    }
    pkid_counter_add(pkid_m.ocsp_refreshed, 1);
  }
  /* A response signed now is good for PKID_OCSP_VALIDITY_S; those not
   * signed keep the nextUpdate they had. */
  if (i > 0 && s->now + PKID_OCSP_VALIDITY_S < s->earliest) {
    s->earliest = s->now + PKID_OCSP_VALIDITY_S;
  }
  for (; i < s->num_due; i++) {
    int64_t nu = s->due[i].next_update;
    if (nu != 0 && nu < s->earliest) s->earliest = nu;
  }
  if (s->earliest < o->sweep_earliest) o->sweep_earliest = s->earliest;
  /* The cursor wrapped (or stayed at 0, a slice that held the whole
   * index): a sweep is complete. The gauge is what an operator alerts on
   * (deploy/prometheus/pkid-rules.yml, PkidOcspNearNextUpdate): responses
   * that should have been refreshed at PKID_OCSP_REFRESH_BEFORE_S left
   * and were not. */
  if (o->refresh_cursor <= from) {
    if (o->sweep_earliest != INT64_MAX) {
      pkid_gauge_set(pkid_metric_child(pkid_m.ocsp_earliest_next_update, NULL),
                     (double)o->sweep_earliest);
    }
    o->sweep_earliest = INT64_MAX;
  }
  free(s);
}

/* --- life ------------------------------------------------------------------------ */

static void free_responder(pkid_ocsp_http *o) { free(o); }

/* split_listen splits "HOST:PORT[/PATH/]" into |host_port| and |prefix|. */
static int split_listen(char *host_port, size_t hp_size, char *prefix, size_t prefix_size,
                        const char *listen) {
  const char *bracket = strchr(listen, ']');
  const char *slash = strchr(bracket != NULL ? bracket : listen, '/');
  size_t hp_len = slash != NULL ? (size_t)(slash - listen) : strlen(listen);
  if (hp_len >= hp_size) return 0;
  memcpy(host_port, listen, hp_len);
  host_port[hp_len] = '\0';
  const char *path = slash != NULL ? slash : "/";
  size_t n = strlen(path);
  if (n + 2 > prefix_size) return 0;
  memcpy(prefix, path, n + 1);
  if (prefix[n - 1] != '/') memcpy(prefix + n, "/", 2);
  return 1;
}

pkid_ocsp_http *pkid_ocsp_http_start_with(uv_loop_t *loop, const char *listen,
                                          const pkid_cas *cas, pkid_status *status,
                                          const pkid_http_limits *limits,
                                          unsigned on_demand_rate, pki_err *err) {
  char host_port[256];
  pkid_ocsp_http *o = calloc(1, sizeof(*o));
  if (o == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  o->sweep_earliest = INT64_MAX;
  o->loop = loop;
  o->cas = cas;
  o->status = status;
  o->rate = on_demand_rate != 0 ? on_demand_rate : PKID_OCSP_ON_DEMAND_RATE;
  o->tokens = o->rate;
  o->tokens_ms = uv_now(loop);
  if (!split_listen(host_port, sizeof(host_port), o->prefix, sizeof(o->prefix), listen)) {
    PKI_ERR(err, PKI_ERR_INVALID, "'%s' is not HOST:PORT or HOST:PORT/PATH/", listen);
    free_responder(o);
    return NULL;
  }
  o->http = pkid_http_new(loop, limits);
  if (o->http == NULL) {
    PKI_ERR_OOM(err);
    free_responder(o);
    return NULL;
  }
  pkid_http_route(o->http, "GET", o->prefix, on_get, o);
  pkid_http_route(o->http, "POST", o->prefix, on_post, o);
  if (!pkid_http_listen(o->http, host_port, err)) {
    pkid_http_stop(o->http, 0, NULL, NULL);
    free_responder(o);
    return NULL;
  }
  uv_timer_init(loop, &o->refresh);
  o->refresh.data = o;
  uv_timer_start(&o->refresh, on_refresh, PKID_OCSP_REFRESH_TICK_MS, PKID_OCSP_REFRESH_TICK_MS);
  char where[80];
  pkid_http_address(o->http, where, sizeof(where));
  pki_log("info", "listening", "ocsp", where, "path", o->prefix, NULL);
  return o;
}

pkid_ocsp_http *pkid_ocsp_http_start(uv_loop_t *loop, const char *listen, const pkid_cas *cas,
                                     pkid_status *status, pki_err *err) {
  return pkid_ocsp_http_start_with(loop, listen, cas, status, NULL, 0, err);
}

pkid_http_server *pkid_ocsp_http_server(pkid_ocsp_http *o) { return o->http; }

int pkid_ocsp_http_address(const pkid_ocsp_http *o, char *out, size_t out_size) {
  return pkid_http_address(o->http, out, out_size);
}

int pkid_ocsp_http_port(const pkid_ocsp_http *o) {
  char where[80];
  return pkid_http_address(o->http, where, sizeof(where));
}

static void on_part_closed(pkid_ocsp_http *o) {
  if (--o->pending_close > 0) return;
  void (*done)(void *) = o->done;
  void *arg = o->done_arg;
  free_responder(o);
  if (done != NULL) done(arg);
}

static void on_timer_closed(uv_handle_t *h) { on_part_closed(h->data); }

static void on_http_stopped(void *arg) { on_part_closed(arg); }

void pkid_ocsp_http_stop(pkid_ocsp_http *o, void (*done)(void *arg), void *arg) {
  if (o->pending_close > 0) return;
  o->done = done;
  o->done_arg = arg;
  o->pending_close = 2;
  uv_timer_stop(&o->refresh);
  uv_close((uv_handle_t *)&o->refresh, on_timer_closed);
  pkid_http_stop(o->http, STOP_GRACE_MS, on_http_stopped, o);
}
