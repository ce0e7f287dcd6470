/* ocsp_server_tool: server/ocsp_http.c serving a real status index, for
 * ocsp_http_test.sh and bench/ocsp_load.
 *
 *   ocsp_server_tool --pki DIR [--passphrase-file F] [--listen HOST:PORT[/PATH/]]
 *                    [--cert CA:FILE]... [--synthetic N] [--rate R]
 *
 * It loads the online CAs of the default catalogue from the pki/ tree DIR
 * (pkictl ceremony demo makes one; the passphrase defaults to
 * DIR/ca-passphrase), puts a record for each --cert (a certificate issued
 * by the CA named CA) in a pkid_status, and N synthetic records under the
 * first CA, pre-signs a SHA-1 response for every record with
 * pkid_ocsp_presign, starts the responder (default 127.0.0.1:0) and prints
 * the bound port on stdout. SIGUSR1 revokes every record (reason
 * keyCompromise) and pre-signs again, as pkid does when a revocation is
 * durable; SIGTERM stops gracefully. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "lib/catalog.h"
#include "lib/cert_info.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/pki_tree.h"
#include "lib/secret.h"
#include "server/ca/ca.h"
#include "server/http/ocsp_http.h"
#include "server/metrics/metrics.h"
#include "server/store/status.h"

#define MAX_CERTS 64

static pkid_status *g_status;
static pkid_ocsp_http *g_ocsp;
static uv_signal_t g_term, g_usr1;

static int fail(const pki_err *err) {
  fprintf(stderr, "ocsp_server_tool: %s: %s\n", pki_err_code_name(err->code), err->msg);
  return 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: ocsp_server_tool --pki DIR [--passphrase-file F] [--listen HOST:PORT]\n"
          "                        [--cert CA:FILE]... [--synthetic N] [--rate R]\n");
  exit(2);
}

/* Revocation goes through a list: pkid_status_put must not run inside
 * pkid_status_foreach. */
typedef struct record_list {
  pkid_cert_record *recs;
  size_t n, cap;
} record_list;

static int collect(void *ctx, const pkid_cert_record *rec) {
  record_list *l = ctx;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    pkid_cert_record *r = realloc(l->recs, cap * sizeof(*r));
    if (r == NULL) return 0;
    l->recs = r;
    l->cap = cap;
  }
  l->recs[l->n++] = *rec;
  return 1;
}

static void on_usr1(uv_signal_t *sig, int signum) {
  (void)sig;
  (void)signum;
  record_list l = {0};
  pkid_status_foreach(g_status, collect, &l);
  int64_t now = (int64_t)time(NULL);
  for (size_t i = 0; i < l.n; i++) {
    pki_err err;
    l.recs[i].revoked = 1;
    l.recs[i].reason = 1; /* keyCompromise */
    l.recs[i].revoked_at = now - 1;
    if (!pkid_status_put(g_status, &l.recs[i]) || !pkid_ocsp_presign(g_ocsp, &l.recs[i], &err)) {
      fprintf(stderr, "ocsp_server_tool: revoking failed\n");
    }
  }
  free(l.recs);
  pki_log("info", "revoked_all", NULL);
}

static void on_stopped(void *arg) {
  (void)arg;
  uv_close((uv_handle_t *)&g_term, NULL);
  uv_close((uv_handle_t *)&g_usr1, NULL);
}

static void on_term(uv_signal_t *sig, int signum) {
  (void)sig;
  (void)signum;
  uv_signal_stop(&g_term);
  pkid_ocsp_http_stop(g_ocsp, on_stopped, NULL);
}

/* add_cert puts a record for the certificate in |file|, issued by |ca|. */
static int add_cert(const pkid_cas *cas, const char *spec, pki_err *err) {
  const char *colon = strchr(spec, ':');
  if (colon == NULL) usage();
  char name[128];
  size_t n = (size_t)(colon - spec);
  if (n >= sizeof(name)) usage();
  memcpy(name, spec, n);
  name[n] = '\0';
  size_t ca = 0;
  while (ca < cas->num_cas && strcmp(cas->cas[ca].def->name, name) != 0) ca++;
  if (ca == cas->num_cas) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no CA named %s", name);
    return 0;
  }
  uint8_t *der;
  size_t der_len;
  if (!pki_tree_read_cert(&der, &der_len, colon + 1, err)) return 0;
  pki_cert_info info;
  int ok = pki_cert_info_parse(&info, der, der_len, err);
  if (ok) {
    pkid_cert_record rec;
    memset(&rec, 0, sizeof(rec));
    const uint8_t *serial = CBS_data(&info.serial);
    size_t serial_len = CBS_len(&info.serial);
    ok = serial_len <= PKI_SERIAL_MAX;
    if (ok) {
      memcpy(rec.serial.bytes, serial, serial_len);
      rec.serial.len = serial_len;
      rec.ca = (uint8_t)ca;
      rec.service = 0xffff;
      rec.not_before = info.not_before;
      rec.not_after = info.not_after;
      ok = pkid_status_put(g_status, &rec) && pkid_ocsp_presign(g_ocsp, &rec, err);
    }
    pki_cert_info_cleanup(&info);
  }
  free(der);
  if (!ok && err->code == PKI_OK) PKI_ERR(err, PKI_ERR_INVALID, "cannot add %s", spec);
  return ok;
}

int main(int argc, char **argv) {
  const char *pki = NULL, *pass_file = NULL, *listen = "127.0.0.1:0";
  const char *certs[MAX_CERTS];
  size_t num_certs = 0;
  unsigned long synthetic = 0, rate = 0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    const char *opt = argv[i], *val = argv[++i];
    if (strcmp(opt, "--pki") == 0) pki = val;
    else if (strcmp(opt, "--passphrase-file") == 0) pass_file = val;
    else if (strcmp(opt, "--listen") == 0) listen = val;
    else if (strcmp(opt, "--cert") == 0 && num_certs < MAX_CERTS) certs[num_certs++] = val;
    else if (strcmp(opt, "--synthetic") == 0) synthetic = strtoul(val, NULL, 10);
    else if (strcmp(opt, "--rate") == 0) rate = strtoul(val, NULL, 10);
    else usage();
  }
  if (pki == NULL) usage();
  signal(SIGPIPE, SIG_IGN);
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = pki_catalog_default(&err);
  if (cat == NULL) return fail(&err);
  char pass_path[PKI_PATH_MAX];
  if (pass_file == NULL) {
    snprintf(pass_path, sizeof(pass_path), "%s/ca-passphrase", pki);
    pass_file = pass_path;
  }
  pki_secret secret;
  if (!pki_secret_read(&secret, pass_file, "PKID_CA_PASSPHRASE", &err)) return fail(&err);
  pkid_cas cas;
  int loaded = pkid_cas_load(&cas, cat, pki, secret.bytes, secret.len, &err);
  pki_secret_cleanup(&secret);
  if (!loaded) return fail(&err);
  if (!pkid_metrics_init()) return 1;

  uv_loop_t *loop = uv_default_loop();
  g_status = pkid_status_new(synthetic + num_certs);
  pkid_http_limits limits = pkid_http_default_limits();
  g_ocsp = pkid_ocsp_http_start_with(loop, listen, &cas, g_status, &limits, (unsigned)rate, &err);
  if (g_status == NULL || g_ocsp == NULL) return fail(&err);
  for (size_t i = 0; i < num_certs; i++) {
    if (!add_cert(&cas, certs[i], &err)) return fail(&err);
  }
  for (unsigned long i = 0; i < synthetic; i++) {
    pkid_cert_record rec;
    memset(&rec, 0, sizeof(rec));
    if (!pki_serial_make(&rec.serial, 7, i, &err)) return fail(&err);
    rec.not_before = (int64_t)time(NULL) - 60;
    rec.not_after = rec.not_before + 86400 * 30;
    rec.service = 0xffff;
    if (!pkid_status_put(g_status, &rec) || !pkid_ocsp_presign(g_ocsp, &rec, &err)) {
      return fail(&err);
    }
  }
  uv_signal_init(loop, &g_term);
  uv_signal_init(loop, &g_usr1);
  uv_signal_start(&g_term, on_term, SIGTERM);
  uv_signal_start(&g_usr1, on_usr1, SIGUSR1);
  printf("%d\n", pkid_ocsp_http_port(g_ocsp));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  pkid_status_free(g_status);
  pkid_cas_cleanup(&cas);
  pki_catalog_free(cat);
  pkid_registry_free(pkid_m.reg);
  return 0;
}
