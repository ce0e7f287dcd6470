/* agent_crl.c: the agent's CRL file (see agent_crl.h). */
#include "client/agent_crl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/crl_cmd.h"
#include "client/haproxy.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/pki_tree.h"

/* How far ahead of this clock a CRL's thisUpdate may be for the agent to
 * wait for it rather than refuse it (crl_fetch_checked's own bound). */
#define WAIT_FOR_THIS_UPDATE_S 300
/* The file holds a CRL per CA: each may be large. */
#define FILE_MAX(k) ((k)->o.max_bytes * 2 * AGENT_CRL_MAX_CAS)

static void fmt_time(char *out, size_t size, int64_t t) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
    snprintf(out, size, "-");
    return;
  }
  strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fmt_number(char *out, size_t size, const pki_crl *crl) {
  if (!crl->has_number) {
    snprintf(out, size, "-");
  } else if (crl->number_u64 != UINT64_MAX) {
    snprintf(out, size, "%llu", (unsigned long long)crl->number_u64);
  } else {
    size_t n = 0;
    n += (size_t)snprintf(out, size, "0x");
    for (size_t i = 0; i < crl->number_len && n + 3 < size; i++) {
      n += (size_t)snprintf(out + n, size - n, "%02x", crl->number[i]);
    }
  }
}

static void ca_drop(agent_crl_ca *c) {
  pki_crl_cleanup(&c->crl);
  free(c->der);
  c->der = NULL;
  c->der_len = 0;
}

/* ca_take makes |der| (malloc'd, parsed into |crl|) the CRL held. */
static void ca_take(agent_crl_ca *c, uint8_t *der, size_t der_len, pki_crl *crl) {
  ca_drop(c);
  c->der = der;
  c->der_len = der_len;
  c->crl = *crl;
  memset(crl, 0, sizeof(*crl));
}

static int read_ca_cert(uint8_t **out, size_t *out_len, const agent_crl_ca *c, pki_err *err) {
  if (!pki_tree_read_cert(out, out_len, c->cert_path, err)) {
    pki_err_prefix(err, "the certificate of CA '%s': ", c->ca->name);
    return 0;
  }
  return 1;
}

/* seed takes, from the file as it is, each CRL that a CA of the chain
 * issued and signed. */
static void seed(agent_crl *k) {
  uint8_t *text = NULL;
  size_t len = 0, pos = 0;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_file_read(&text, &len, k->o.file, FILE_MAX(k), &err)) return;
  for (;;) {
    uint8_t *der = NULL;
    size_t der_len = 0;
    pki_crl crl;
    memset(&crl, 0, sizeof(crl));
    if (!crl_next_pem(&der, &der_len, (const char *)text, len, &pos, &err)) break;
    if (!pki_crl_parse(&crl, der, der_len, &err)) {
      free(der);
      continue;
    }
    for (size_t i = 0; i < k->num_cas; i++) {
      agent_crl_ca *c = &k->cas[i];
      uint8_t *cert = NULL;
      size_t cert_len = 0;
      pki_err e;
      pki_err_clear(&e);
      if (c->der == NULL && !crl.is_delta && read_ca_cert(&cert, &cert_len, c, &e) &&
          crl_check_issuer(&crl, cert, cert_len, &e)) {
        ca_take(c, der, der_len, &crl);
        der = NULL;
      }
      free(cert);
    }
    pki_crl_cleanup(&crl);
    free(der);
  }
  free(text);
}

int agent_crl_init(agent_crl *k, const agent_crl_opts *o, const pki_catalog *cat,
                   pki_err *err) {
  memset(k, 0, sizeof(*k));
  k->o = *o;
  if (k->o.max_bytes == 0) k->o.max_bytes = HTTP_GET_DEFAULT_MAX_BODY;
  if (k->o.haproxy_name == NULL) k->o.haproxy_name = o->file;
  const pki_catalog_ca *chain[AGENT_CRL_MAX_CAS];
  k->num_cas = crl_ca_chain(chain, AGENT_CRL_MAX_CAS, cat, o->ca);
  if (k->num_cas == 0) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "--crl-ca: no CA '%s' in the catalogue", o->ca);
    return 0;
  }
  for (size_t i = 0; i < k->num_cas; i++) {
    agent_crl_ca *c = &k->cas[i];
    c->ca = chain[i];
    if (!crl_url_of(c->url, sizeof(c->url), cat, c->ca, o->base_url, 0, err) ||
        !pki_tree_ca_path(c->cert_path, sizeof(c->cert_path), o->pki, c->ca, PKI_TREE_CA_CERT,
                          err)) {
      return 0;
    }
  }
  seed(k);
  /* haproxy may hold an older file than this one (loaded before the last
   * write, or a push that failed): tell it once. */
  k->push_pending = 1;
  return 1;
}

void agent_crl_cleanup(agent_crl *k) {
  for (size_t i = 0; i < k->num_cas; i++) ca_drop(&k->cas[i]);
  k->num_cas = 0;
}

/* fetch_one brings |c| up to date; 1 when its CRL is current. */
static int fetch_one(agent_crl *k, agent_crl_ca *c) {
  uint8_t *cert = NULL;
  size_t cert_len = 0;
  pki_err err;
  pki_err_clear(&err);
  crl_fetched f;
  memset(&f, 0, sizeof(f));
  int ok = read_ca_cert(&cert, &cert_len, c, &err);
  if (ok) {
    crl_source src = {
        .url = c->url,
        .etag = c->der != NULL ? c->etag : NULL,
        .ca_der = cert,
        .ca_len = cert_len,
        .want = CRL_WANT_COMPLETE,
        .held = c->der != NULL ? &c->crl : NULL,
        .max_bytes = k->o.max_bytes,
        .timeout_ms = k->o.timeout_ms,
    };
    ok = crl_fetch_checked(&f, &src, &err);
  }
  free(cert);
  if (!ok) {
    c->error_total++;
    pki_log("warn", "crl_fetch_failed", "ca", c->ca->name, "url", c->url, "error", err.msg,
            "kept", c->der != NULL ? "the CRL held" : "nothing: no CRL yet", NULL);
    return 0;
  }
  c->ok_total++;
  if (f.etag[0] != '\0' || f.outcome == CRL_NEW) {
    snprintf(c->etag, sizeof(c->etag), "%s", f.etag);
  }
  if (f.outcome == CRL_NEW) {
    char number[64], next[32], entries[24];
    fmt_number(number, sizeof(number), &f.crl);
    fmt_time(next, sizeof(next), f.crl.next_update);
    snprintf(entries, sizeof(entries), "%zu", f.crl.num_entries);
    pki_log("info", "crl_fetched", "ca", c->ca->name, "number", number, "entries", entries,
            "next_update", next, NULL);
    ca_take(c, f.der, f.der_len, &f.crl);
    f.der = NULL;
  }
  crl_fetched_cleanup(&f);
  if (c->crl.next_update != 0 && c->crl.next_update <= (int64_t)time(NULL)) {
    char next[32];
    fmt_time(next, sizeof(next), c->crl.next_update);
    pki_log("error", "crl_stale", "ca", c->ca->name, "next_update", next, "message",
            "the newest CRL there is has expired: relying parties refuse it", NULL);
  }
  return 1;
}

/* build_pem concatenates the CRLs held, nearest CA first. */
static char *build_pem(const agent_crl *k, size_t *out_len, int64_t *out_latest, pki_err *err) {
  char *all = NULL;
  size_t len = 0;
  *out_latest = 0;
  for (size_t i = 0; i < k->num_cas; i++) {
    const agent_crl_ca *c = &k->cas[i];
    char *pem = NULL;
    size_t pem_len = 0;
    if (!pki_crl_to_pem(&pem, &pem_len, c->der, c->der_len, err)) {
      free(all);
      return NULL;
    }
    char *grown = realloc(all, len + pem_len + 1);
    if (grown == NULL) {
      free(pem);
      free(all);
      PKI_ERR_OOM(err);
      return NULL;
    }
    all = grown;
    memcpy(all + len, pem, pem_len + 1);
    len += pem_len;
    free(pem);
    if (c->crl.this_update > *out_latest) *out_latest = c->crl.this_update;
  }
  *out_len = len;
  return all;
}

/* same_file reports whether |path| holds exactly |data|. */
static int same_file(const agent_crl *k, const char *path, const char *data, size_t len) {
  uint8_t *text = NULL;
  size_t text_len = 0;
  pki_err e;
  pki_err_clear(&e);
  if (!pki_file_read(&text, &text_len, path, FILE_MAX(k), &e)) return 0;
  int same = text_len == len && memcmp(text, data, len) == 0;
  free(text);
  return same;
}

static void sleep_s(int64_t s) {
  struct timespec ts = {(time_t)s, 0};
  nanosleep(&ts, NULL); /* a stop signal cuts it short */
}

int agent_crl_pass(agent_crl *k, int *out_written) {
  *out_written = 0;
  int all_ok = 1;
  for (size_t i = 0; i < k->num_cas; i++) {
    if (!fetch_one(k, &k->cas[i])) all_ok = 0;
  }
  for (size_t i = 0; i < k->num_cas; i++) {
    if (k->cas[i].der == NULL) {
      pki_log("error", "crl_incomplete", "file", k->o.file, "ca", k->cas[i].ca->name, "message",
              "no CRL of this CA yet: the file is left as it is", NULL);
      return 0;
    }
  }
  pki_err err;
  pki_err_clear(&err);
  size_t len = 0;
  int64_t latest = 0;
  char *pem = build_pem(k, &len, &latest, &err);
  if (pem == NULL) {
    pki_log("error", "crl_write_failed", "file", k->o.file, "error", err.msg, NULL);
    return 0;
  }
  if (same_file(k, k->o.file, pem, len)) {
    free(pem);
    return all_ok;
  }
  /* Not yet valid by this clock: OpenSSL would refuse it until then. */
  int64_t ahead = latest - (int64_t)time(NULL);
  if (ahead > 0 && ahead <= WAIT_FOR_THIS_UPDATE_S) {
    char s[24];
    snprintf(s, sizeof(s), "%lld", (long long)ahead);
    pki_log("info", "crl_wait", "file", k->o.file, "seconds", s, "message",
            "a CRL's thisUpdate is ahead of this clock", NULL);
    sleep_s(ahead);
    if ((int64_t)time(NULL) < latest) {
      free(pem);
      return 0; /* interrupted: the next pass writes it */
    }
  }
  if (!pki_file_write_atomic(k->o.file, pem, len, 0644, &err)) {
    free(pem);
    pki_log("error", "crl_write_failed", "file", k->o.file, "error", err.msg, NULL);
    return 0;
  }
  free(pem);
  *out_written = 1;
  k->push_pending = 1;
  char list[512];
  size_t n = 0;
  list[0] = '\0';
  for (size_t i = 0; i < k->num_cas && n < sizeof(list); i++) {
    char number[64];
    fmt_number(number, sizeof(number), &k->cas[i].crl);
    n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s:%s", i > 0 ? "," : "",
                          k->cas[i].ca->name, number);
  }
  pki_log("info", "crl_written", "file", k->o.file, "crls", list, NULL);
  return all_ok;
}

int agent_crl_push(agent_crl *k) {
  if (k->o.haproxy_socket == NULL || !k->push_pending) return 1;
  /* Push what is on disk: what haproxy would load at a restart. */
  uint8_t *text = NULL;
  size_t len = 0;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_file_read(&text, &len, k->o.file, FILE_MAX(k), &err)) {
    /* No file yet (crl_incomplete said why): nothing to push. */
    return 0;
  }
  int ok = haproxy_update_crl_file(k->o.haproxy_socket, k->o.haproxy_name, (const char *)text,
                                   k->o.timeout_ms < 60000 ? k->o.timeout_ms : 60000, &err);
  free(text);
  if (!ok) {
    k->push_error_total++;
    pki_log("error", "crl_push_failed", "socket", k->o.haproxy_socket, "crl_file",
            k->o.haproxy_name, "error", err.msg, "retry", "next pass", NULL);
    return 0;
  }
  k->push_ok_total++;
  k->push_pending = 0;
  pki_log("info", "crl_pushed", "socket", k->o.haproxy_socket, "crl_file", k->o.haproxy_name,
          NULL);
  return 1;
}

void agent_crl_metrics(const agent_crl *k, char *buf, size_t size, size_t *len) {
  size_t n = *len;
#define APPEND(...)                                                     \
  do {                                                                  \
    if (n < size) n += (size_t)snprintf(buf + n, size - n, __VA_ARGS__); \
  } while (0)
  APPEND("# HELP crl_next_update_timestamp nextUpdate of the CRL held, in seconds since the "
         "epoch.\n# TYPE crl_next_update_timestamp gauge\n");
  for (size_t i = 0; i < k->num_cas; i++) {
    if (k->cas[i].der == NULL) continue;
    APPEND("crl_next_update_timestamp{ca=\"%s\"} %lld\n", k->cas[i].ca->name,
           (long long)k->cas[i].crl.next_update);
  }
  APPEND("# HELP pkid_agent_crl_fetches_total CRL fetches by outcome.\n"
         "# TYPE pkid_agent_crl_fetches_total counter\n");
  for (size_t i = 0; i < k->num_cas; i++) {
    APPEND("pkid_agent_crl_fetches_total{ca=\"%s\",result=\"ok\"} %llu\n"
           "pkid_agent_crl_fetches_total{ca=\"%s\",result=\"error\"} %llu\n",
           k->cas[i].ca->name, (unsigned long long)k->cas[i].ok_total, k->cas[i].ca->name,
           (unsigned long long)k->cas[i].error_total);
  }
  if (k->o.haproxy_socket != NULL) {
    APPEND("# HELP pkid_agent_crl_pushes_total CRL pushes to haproxy by outcome.\n"
           "# TYPE pkid_agent_crl_pushes_total counter\n"
           "pkid_agent_crl_pushes_total{result=\"ok\"} %llu\n"
           "pkid_agent_crl_pushes_total{result=\"error\"} %llu\n",
           (unsigned long long)k->push_ok_total, (unsigned long long)k->push_error_total);
  }
#undef APPEND
  *len = n;
}
