#include "server/http/admin.h"

#include <stdlib.h>
#include <string.h>

#include "server/http/http.h"
#include "lib/log.h"

struct pkid_admin {
  pkid_http_server *http;
  pkid_registry *reg;
  int ready;
  char *checkpoint; /* the newest, or NULL */
  size_t checkpoint_len;
  void (*done)(void *arg);
  void *done_arg;
};

static const char kText[] = "Content-Type: text/plain; charset=utf-8\r\n";

static void on_metrics(void *ctx, pkid_http_req *req) {
  pkid_admin *a = ctx;
  size_t len;
  char *body = pkid_registry_render(a->reg, &len);
  if (body == NULL) {
    pkid_http_respond(req, 500, kText, "out of memory\n", 14);
    return;
  }
  pkid_http_respond(req, 200, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", body,
                    len);
  free(body);
}

static void on_healthz(void *ctx, pkid_http_req *req) {
  (void)ctx;
  pkid_http_respond(req, 200, kText, "ok\n", 3);
}

static void on_readyz(void *ctx, pkid_http_req *req) {
  pkid_admin *a = ctx;
  if (a->ready) {
    pkid_http_respond(req, 200, kText, "ready\n", 6);
  } else {
    pkid_http_respond(req, 503, kText, "not ready\n", 10);
  }
}

static void on_checkpoint(void *ctx, pkid_http_req *req) {
  pkid_admin *a = ctx;
  if (a->checkpoint == NULL) {
    pkid_http_respond(req, 404, kText, "no checkpoint yet\n", 18);
    return;
  }
  pkid_http_respond(req, 200, kText, a->checkpoint, a->checkpoint_len);
}

void pkid_admin_set_checkpoint(pkid_admin *a, const char *text, size_t len) {
  char *copy = malloc(len > 0 ? len : 1);
  if (copy == NULL) return; /* the older one stays */
  memcpy(copy, text, len);
  free(a->checkpoint);
  a->checkpoint = copy;
  a->checkpoint_len = len;
}

pkid_admin *pkid_admin_start(uv_loop_t *loop, const char *listen, pkid_registry *reg,
                             pki_err *err) {
  pkid_admin *a = calloc(1, sizeof(*a));
  if (a == NULL || (a->http = pkid_http_new(loop, NULL)) == NULL) {
    free(a);
    PKI_ERR_OOM(err);
    return NULL;
  }
  a->reg = reg;
  pkid_http_route(a->http, "GET", "/metrics", on_metrics, a);
  pkid_http_route(a->http, "GET", "/healthz", on_healthz, a);
  pkid_http_route(a->http, "GET", "/readyz", on_readyz, a);
  pkid_http_route(a->http, "GET", "/checkpoint", on_checkpoint, a);
  if (!pkid_http_listen(a->http, listen, err)) {
    pkid_http_stop(a->http, 0, NULL, NULL);
    free(a);
    return NULL;
  }
  char where[80];
  pkid_http_address(a->http, where, sizeof(where));
  pki_log("info", "listening", "admin", where, NULL);
  return a;
}

void pkid_admin_set_ready(pkid_admin *a, int ready) { a->ready = ready != 0; }

int pkid_admin_address(const pkid_admin *a, char *out, size_t out_size) {
  return pkid_http_address(a->http, out, out_size);
}

static void on_stopped(void *arg) {
  pkid_admin *a = arg;
  void (*done)(void *) = a->done;
  void *done_arg = a->done_arg;
  free(a->checkpoint);
  free(a);
  if (done != NULL) done(done_arg);
}

void pkid_admin_stop(pkid_admin *a, void (*done)(void *arg), void *arg) {
  a->done = done;
  a->done_arg = arg;
  a->ready = 0;
  pkid_http_stop(a->http, 1000, on_stopped, a);
}
