#include "server/http/crl_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "lib/cert_info.h"
#include "lib/crl.h"
#include "lib/file.h"
#include "lib/pem.h"
#include "server/metrics/metrics.h"

/* CA certificates change only with a ceremony and a restart. */
#define CERT_MAX_AGE_S 86400

struct pkid_crl_http {
  pkid_store *store;
  const pkid_cas *cas;
  char *root_name;
  pkid_crl_blob *root;
};

static const char kText[] = "Content-Type: text/plain\r\n";

static void not_found(pkid_http_req *req) {
  pkid_http_respond(req, 404, kText, "Not Found\n", 10);
}

/* etag_matches applies If-None-Match (RFC 9110 13.1.2): a list of entity
 * tags, compared weakly, or "*". |tag| is ours, quoted. */
static int etag_matches(const char *header, const char *tag) {
  size_t tag_len = strlen(tag);
  const char *p = header;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    if (*p == '\0') break;
    if (*p == '*') return 1;
    if (strncmp(p, "W/", 2) == 0) p += 2;
    const char *end = p;
    if (*p == '"') {
      end = strchr(p + 1, '"');
      if (end == NULL) return 0;
      end++;
    } else {
      while (*end != '\0' && *end != ',') end++;
    }
    if ((size_t)(end - p) == tag_len && memcmp(p, tag, tag_len) == 0) return 1;
    p = end;
  }
  return 0;
}

/* serve answers with |body| (or 304), with the cache headers of the top. */
static void serve(pkid_http_req *req, const char *type, const char *etag, int64_t last_modified,
                  int64_t expires, const uint8_t *body, size_t len, pkid_crl_blob *hold) {
  char modified[30], exp[30], headers[512];
  int64_t now = (int64_t)time(NULL);
  long long max_age = expires > now ? (long long)(expires - now) : 0;
  pkid_http_date(modified, last_modified);
  pkid_http_date(exp, expires);
  snprintf(headers, sizeof(headers),
           "Content-Type: %s\r\nLast-Modified: %s\r\nExpires: %s\r\n"
           "Cache-Control: public, no-transform, max-age=%lld\r\nETag: %s\r\n",
           type, modified, exp, max_age, etag);
  if (req->if_none_match[0] != '\0' && etag_matches(req->if_none_match, etag)) {
    /* The headers a 200 would have had, without the type (RFC 9110 15.4.5). */
    snprintf(headers, sizeof(headers),
             "Last-Modified: %s\r\nExpires: %s\r\n"
             "Cache-Control: public, no-transform, max-age=%lld\r\nETag: %s\r\n",
             modified, exp, max_age, etag);
    pkid_http_respond(req, 304, headers, NULL, 0);
    return;
  }
  if (hold != NULL) {
    pkid_crl_blob_ref(hold);
    pkid_http_respond_shared(req, 200, headers, body, len, pkid_crl_blob_unref, hold);
  } else {
    pkid_http_respond(req, 200, headers, body, len);
  }
}

static void serve_crl(pkid_http_req *req, const char *ca, const char *kind,
                      pkid_crl_blob *blob) {
  char etag[160];
  snprintf(etag, sizeof(etag), "\"%s-%s-%llu\"", ca, kind, (unsigned long long)blob->number);
  serve(req, "application/pkix-crl", etag, blob->this_update, blob->next_update, blob->der,
        blob->len, blob);
}

/* name_of copies the file name after |prefix| without |suffix| into |out|;
 * 0 if the path does not have that form. The query, if any, is ignored. */
static int name_of(char *out, size_t out_size, const pkid_http_req *req, const char *prefix,
                   const char *suffix) {
  size_t plen = strlen(prefix), slen = strlen(suffix);
  size_t len = req->path_len;
  const char *q = memchr(req->path, '?', len);
  if (q != NULL) len = (size_t)(q - req->path);
  if (len <= plen + slen || memcmp(req->path, prefix, plen) != 0 ||
      memcmp(req->path + len - slen, suffix, slen) != 0) {
    return 0;
  }
  size_t n = len - plen - slen;
  if (n >= out_size || memchr(req->path + plen, '/', n) != NULL) return 0;
  memcpy(out, req->path + plen, n);
  out[n] = '\0';
  return 1;
}

static void on_crl(void *ctx, pkid_http_req *req) {
  pkid_crl_http *h = ctx;
  char name[128];
  if (!name_of(name, sizeof(name), req, "/crl/", ".crl")) {
    not_found(req);
    return;
  }
  if (strcmp(name, h->root_name) == 0) {
    if (h->root == NULL) {
      not_found(req);
      return;
    }
    serve_crl(req, name, "complete", h->root);
    return;
  }
  /* "<ca>.crl", else "<ca>-delta.crl": a CA's own name wins. */
  int delta = 0;
  const pkid_ca *ca = pkid_cas_find(h->cas, name);
  size_t n = strlen(name);
  if (ca == NULL && n > 6 && strcmp(name + n - 6, "-delta") == 0) {
    name[n - 6] = '\0';
    ca = pkid_cas_find(h->cas, name);
    delta = 1;
  }
  if (ca == NULL) {
    not_found(req);
    return;
  }
  const pkid_ca_crls *c = &h->store->crls[pkid_cas_index(h->cas, ca)];
  pkid_crl_blob *blob = delta ? c->delta : c->full;
  if (blob == NULL) {
    pkid_http_respond(req, 503, "Content-Type: text/plain\r\nRetry-After: 1\r\n",
                      "CRL not built yet\n", 18);
    return;
  }
  serve_crl(req, name, delta ? "delta" : "complete", blob);
}

static void on_cert(void *ctx, pkid_http_req *req) {
  pkid_crl_http *h = ctx;
  char name[128];
  if (!name_of(name, sizeof(name), req, "/ca/", ".crt")) {
    not_found(req);
    return;
  }
  const uint8_t *der = NULL;
  size_t len = 0;
  if (strcmp(name, h->root_name) == 0) {
    der = h->cas->root;
    len = h->cas->root_len;
  } else {
    const pkid_ca *ca = pkid_cas_find(h->cas, name);
    if (ca != NULL) {
      der = ca->chain[0];
      len = ca->chain_len[0];
    }
  }
  if (der == NULL || len < 16) {
    not_found(req);
    return;
  }
  /* The last octets lie in the signature: another certificate, another tag. */
  static const char kHex[] = "0123456789abcdef";
  char etag[40];
  size_t n = 0;
  etag[n++] = '"';
  for (size_t i = len - 16; i < len; i++) {
    etag[n++] = kHex[der[i] >> 4];
    etag[n++] = kHex[der[i] & 15];
  }
  etag[n++] = '"';
  etag[n] = '\0';
  int64_t now = (int64_t)time(NULL);
  serve(req, "application/pkix-cert", etag, now, now + CERT_MAX_AGE_S, der, len, NULL);
}

pkid_crl_http *pkid_crl_http_new(pkid_http_server *srv, pkid_store *store, const pkid_cas *cas,
                                 const char *root_name, pki_err *err) {
  pkid_crl_http *h = calloc(1, sizeof(*h));
  if (h == NULL || (h->root_name = strdup(root_name)) == NULL) {
    free(h);
    PKI_ERR_OOM(err);
    return NULL;
  }
  h->store = store;
  h->cas = cas;
  if (!pkid_http_route(srv, "GET", "/crl/", on_crl, h) ||
      !pkid_http_route(srv, "GET", "/ca/", on_cert, h)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "the OCSP listener has no room for the CRL routes");
    pkid_crl_http_free(h);
    return NULL;
  }
  return h;
}

void pkid_crl_http_set_root(pkid_crl_http *h, pkid_crl_blob *root) {
  if (root != NULL) pkid_crl_blob_ref(root);
  pkid_crl_blob_unref(h->root);
  h->root = root;
}

int pkid_crl_http_load_root(pkid_crl_http *h, const char *path, pki_err *err) {
  uint8_t *text = NULL, *der = NULL;
  size_t text_len, der_len;
  pki_cert_info root;
  pki_crl crl;
  EVP_PKEY *key = NULL;
  int ok = 0, have_root = 0, have_crl = 0;
  memset(&crl, 0, sizeof(crl));
  static const char *const kLabels[] = {"X509 CRL"};
  if (!pki_file_read(&text, &text_len, path, 256u << 20, err) ||
      !pki_pem_decode(&der, &der_len, NULL, kLabels, 1, text, text_len, PKI_PEM_OR_DER, err) ||
      !pki_cert_info_parse(&root, h->cas->root, h->cas->root_len, err)) {
    goto out;
  }
  have_root = 1;
  if (!pki_crl_parse(&crl, der, der_len, err)) goto out;
  have_crl = 1;
  CBS spki = root.spki;
  if ((key = EVP_parse_public_key(&spki)) == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "the root certificate's key does not parse");
    goto out;
  }
  if (!CBS_mem_equal(&crl.issuer, CBS_data(&root.subject), CBS_len(&root.subject))) {
    PKI_ERR(err, PKI_ERR_INVALID, "its issuer is not the root");
    goto out;
  }
  if (!pki_crl_verify(&crl, key, err)) goto out;
  pkid_crl_blob *blob = pkid_crl_blob_new(der, der_len, crl.number_u64, crl.this_update,
                                          crl.next_update, crl.num_entries);
  der = NULL;
  if (blob == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  pkid_crl_http_set_root(h, blob);
  pkid_crl_blob_unref(blob);
  pkid_metrics_crl(h->root_name, 0, blob->len, blob->num_entries, blob->number,
                   blob->this_update, blob->next_update);
  ok = 1;
out:
  if (!ok) pki_err_prefix(err, "%s: ", path);
  EVP_PKEY_free(key);
  if (have_crl) pki_crl_cleanup(&crl);
  if (have_root) pki_cert_info_cleanup(&root);
  free(der);
  free(text);
  return ok;
}

void pkid_crl_http_free(pkid_crl_http *h) {
  if (h == NULL) return;
  pkid_crl_blob_unref(h->root);
  free(h->root_name);
  free(h);
}
