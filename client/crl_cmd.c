/* crl_cmd.c: `pkictl crl fetch|inspect` and the checks of a CRL before it
 * is written (see crl_cmd.h). */
#include "client/crl_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "client/print.h"
#include "lib/cert_info.h"
#include "lib/der.h"
#include "lib/file.h"
#include "lib/pem.h"
#include "lib/pki_tree.h"

/* A CA certificate and a CRL file read from disk are bounded too. */
#define CA_FILE_MAX ((size_t)1 << 20)
/* thisUpdate a little ahead of our clock is skew; much further, a CRL not
 * meant for now. */
#define FUTURE_SKEW_S 300

static const char kCrlUsage[] =
    "usage: pkictl crl fetch (--ca NAME [--delta] | --url URL) --out FILE [--pem]\n"
    "           [--pki DIR | --ca-file FILE] [--base-url URL] [--max-size 256M]\n"
    "           [--timeout-ms N] [--catalog FILE]\n"
    "       pkictl crl inspect FILE [--pki DIR | --ca-file FILE] [--catalog FILE]\n";

int crl_parse_size(size_t *out, const char *text) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || text[0] == '-') return 0;
  unsigned shift = 0;
  if (*end == 'K' || *end == 'k') shift = 10;
  if (*end == 'M' || *end == 'm') shift = 20;
  if (*end == 'G' || *end == 'g') shift = 30;
  if (shift != 0) end++;
  if (*end != '\0' || v == 0 || v > (SIZE_MAX >> shift)) return 0;
  *out = (size_t)v << shift;
  return 1;
}

/* ---- checks ---- */

int crl_check_issuer(const pki_crl *crl, const uint8_t *ca_der, size_t ca_len, pki_err *err) {
  pki_cert_info ci;
  memset(&ci, 0, sizeof(ci));
  EVP_PKEY *key = NULL;
  int ok = 0;
  if (!pki_cert_info_parse(&ci, ca_der, ca_len, err)) {
    pki_err_prefix(err, "the CA certificate: ");
    goto out;
  }
  /* 6.3.3 (b), 5.1.2.3: the CRL's issuer is the CA, by name... */
  if (!CBS_mem_equal(&crl->issuer, CBS_data(&ci.subject), CBS_len(&ci.subject))) {
    PKI_ERR(err, PKI_ERR_AUTH, "the CRL's issuer is not the CA's subject: another CA's CRL");
    goto out;
  }
  /* ...and by key, when both say which (5.2.1). */
  if (crl->aki_len > 0 && ci.has_ski &&
      !CBS_mem_equal(&ci.ski, crl->aki, crl->aki_len)) {
    PKI_ERR(err, PKI_ERR_AUTH,
            "the CRL's authority key identifier is not the CA's key identifier: signed by "
            "another key of that name");
    goto out;
  }
  /* 6.3.3 (f), 4.2.1.3: a key that may not sign CRLs did not sign this. */
  if (ci.has_key_usage && !(ci.key_usage & PKI_KU_CRL_SIGN)) {
    PKI_ERR(err, PKI_ERR_DENIED, "the CA's key usage does not include cRLSign");
    goto out;
  }
  CBS spki = ci.spki;
  key = EVP_parse_public_key(&spki);
  ERR_clear_error();
  if (key == NULL) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "the CA certificate's key cannot be read");
    goto out;
  }
  if (!pki_crl_verify(crl, key, err)) {
    pki_err_prefix(err, "the CRL's signature does not verify under the CA's key: ");
    err->code = PKI_ERR_AUTH;
    goto out;
  }
  ok = 1;
out:
  EVP_PKEY_free(key);
  pki_cert_info_cleanup(&ci);
  return ok;
}

int crl_number_cmp(const pki_crl *a, const pki_crl *b) {
  if (!a->has_number || !b->has_number) return a->has_number - b->has_number;
  const uint8_t *x = a->number, *y = b->number;
  size_t xl = a->number_len, yl = b->number_len;
  while (xl > 0 && x[0] == 0) x++, xl--;
  while (yl > 0 && y[0] == 0) y++, yl--;
  if (xl != yl) return xl < yl ? -1 : 1;
  return xl == 0 ? 0 : memcmp(x, y, xl);
}

static const char *const kCrlLabel[] = {"X509 CRL"};

int crl_decode(uint8_t **out, size_t *out_len, const uint8_t *text, size_t text_len,
               pki_err *err) {
  const char *label;
  return pki_pem_decode(out, out_len, &label, kCrlLabel, 1, text, text_len, PKI_PEM_OR_DER, err);
}

int crl_next_pem(uint8_t **out, size_t *out_len, const char *text, size_t text_len,
                 size_t *pos, pki_err *err) {
  static const char kBegin[] = "-----BEGIN X509 CRL-----";
  static const char kEnd[] = "-----END X509 CRL-----";
  const char *from = text + *pos, *end = text + text_len;
  const char *b = from < end ? memmem(from, (size_t)(end - from), kBegin, sizeof(kBegin) - 1)
                             : NULL;
  if (b == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no more CRLs");
    return 0;
  }
  const char *e = memmem(b, (size_t)(end - b), kEnd, sizeof(kEnd) - 1);
  size_t stop = e != NULL ? (size_t)(e - text) + sizeof(kEnd) - 1 : text_len;
  const char *label;
  if (!pki_pem_decode(out, out_len, &label, kCrlLabel, 1, (const uint8_t *)b,
                      stop - (size_t)(b - text), 0, err)) {
    return 0;
  }
  *pos = stop;
  return 1;
}

void crl_fetched_cleanup(crl_fetched *f) {
  if (f == NULL) return;
  pki_crl_cleanup(&f->crl);
  free(f->der);
  memset(f, 0, sizeof(*f));
}

/* find_issuer_cert finds, among the catalogue's CAs in the tree, the one
 * whose subject is |crl|'s issuer, and reads its certificate. */
static int find_issuer_cert(uint8_t **out, size_t *out_len, const pki_catalog *cat,
                            const char *pki, const pki_crl *crl, pki_err *err) {
  for (size_t i = 0; i < cat->num_cas; i++) {
    char path[PKI_PATH_MAX];
    uint8_t *der = NULL;
    size_t len = 0;
    pki_err e;
    pki_err_clear(&e);
    if (!pki_tree_ca_path(path, sizeof(path), pki, &cat->cas[i], PKI_TREE_CA_CERT, &e) ||
        !pki_tree_read_cert(&der, &len, path, &e)) {
      continue;
    }
    pki_cert_info ci;
    memset(&ci, 0, sizeof(ci));
    int match = pki_cert_info_parse(&ci, der, len, &e) &&
                CBS_mem_equal(&crl->issuer, CBS_data(&ci.subject), CBS_len(&ci.subject));
    pki_cert_info_cleanup(&ci);
    if (match) {
      *out = der;
      *out_len = len;
      return 1;
    }
    free(der);
  }
  PKI_ERR(err, PKI_ERR_NOT_FOUND, "no CA certificate in %s has the CRL's issuer as subject",
          pki);
  return 0;
}

/* said copies a short, printable part of an error response's body. */
static void said(char *out, size_t size, const http_get_response *r) {
  size_t n = 0;
  for (size_t i = 0; r->body != NULL && i < r->body_len && n + 1 < size && n < 160; i++) {
    unsigned char c = r->body[i];
    out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
  }
  while (n > 0 && out[n - 1] == ' ') n--;
  out[n] = '\0';
}

int crl_fetch_checked(crl_fetched *out, const crl_source *src, pki_err *err) {
  memset(out, 0, sizeof(*out));
  http_get_request req = {
      .url = src->url,
      .if_none_match = src->etag != NULL && src->etag[0] != '\0' ? src->etag : NULL,
      .accept = "application/pkix-crl",
      .max_body = src->max_bytes,
      .timeout_ms = src->timeout_ms,
  };
  http_get_response resp;
  if (!http_get(&resp, &req, err)) return 0;
  int ok = 0;
  uint8_t *found = NULL;
  char text[200];
  said(text, sizeof(text), &resp);
  snprintf(out->etag, sizeof(out->etag), "%s", resp.etag);
  if (resp.status == 304) {
    if (req.if_none_match == NULL) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: 304 Not Modified to a request that was not conditional",
              src->url);
      goto out;
    }
    out->outcome = CRL_NOT_MODIFIED;
    ok = 1;
    goto out;
  }
  if (resp.status != 200) {
    pki_err_code code = resp.status == 404   ? PKI_ERR_NOT_FOUND
                        : resp.status >= 500 ? PKI_ERR_UNAVAILABLE
                                             : PKI_ERR_INVALID;
    PKI_ERR(err, code, "%s: HTTP %d%s%s%s", src->url, resp.status,
            resp.status == 503 ? " (no CRL built yet?)" : "", text[0] != '\0' ? ": " : "", text);
    goto out;
  }
  /* The body is DER (RFC 5280 4.2.1.13); PEM is taken too, checked alike. */
  if (!crl_decode(&out->der, &out->der_len, resp.body != NULL ? resp.body : (const uint8_t *)"",
                  resp.body_len, err) ||
      !pki_crl_parse(&out->crl, out->der, out->der_len, err)) {
    pki_err_prefix(err, "%s: ", src->url);
    goto out;
  }
  const uint8_t *ca_der = src->ca_der;
  size_t ca_len = src->ca_len;
  if (ca_der == NULL) {
    if (!find_issuer_cert(&found, &ca_len, src->cat, src->pki, &out->crl, err)) {
      pki_err_prefix(err, "%s: ", src->url);
      goto out;
    }
    ca_der = found;
  }
  if (!crl_check_issuer(&out->crl, ca_der, ca_len, err)) {
    pki_err_prefix(err, "%s: ", src->url);
    goto out;
  }
  if (src->want == CRL_WANT_COMPLETE && out->crl.is_delta) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: a delta CRL where the complete CRL was asked for",
            src->url);
    goto out;
  }
  if (src->want == CRL_WANT_DELTA && !out->crl.is_delta) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: a complete CRL where the delta CRL was asked for",
            src->url);
    goto out;
  }
  int64_t now = (int64_t)time(NULL);
  if (out->crl.this_update > now + FUTURE_SKEW_S) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: thisUpdate is more than %d s ahead of this clock",
            src->url, FUTURE_SKEW_S);
    goto out;
  }
  if (out->crl.next_update != 0 && out->crl.next_update < out->crl.this_update) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: nextUpdate comes before thisUpdate", src->url);
    goto out;
  }
  out->stale = out->crl.next_update != 0 && out->crl.next_update <= now;
  /* The floor is the CRL held of the same issuer. */
  if (src->held != NULL &&
      CBS_mem_equal(&src->held->issuer, CBS_data(&out->crl.issuer), CBS_len(&out->crl.issuer))) {
    int cmp = crl_number_cmp(&out->crl, src->held);
    if (cmp < 0 || (cmp == 0 && !out->crl.has_number &&
                    out->crl.this_update < src->held->this_update)) {
      PKI_ERR(err, PKI_ERR_DENIED,
              "%s: this CRL is older than the one held (a lower cRLNumber, RFC 5280 5.2.3): "
              "refused, since it would undo revocations",
              src->url);
      goto out;
    }
    if (cmp == 0 && (out->crl.has_number || out->crl.this_update == src->held->this_update)) {
      pki_crl_cleanup(&out->crl);
      free(out->der);
      out->der = NULL;
      out->der_len = 0;
      out->outcome = CRL_SAME;
      ok = 1;
      goto out;
    }
  }
  out->outcome = CRL_NEW;
  ok = 1;
out:
  free(found);
  http_get_response_cleanup(&resp);
  if (!ok) crl_fetched_cleanup(out);
  return ok;
}

/* ---- the catalogue ---- */

size_t crl_ca_chain(const pki_catalog_ca **out, size_t max, const pki_catalog *cat,
                    const char *ca) {
  size_t n = 0;
  const pki_catalog_ca *c = pki_catalog_find_ca(cat, ca);
  while (c != NULL) {
    if (n == max) return 0;
    out[n++] = c;
    c = c->parent != NULL ? pki_catalog_find_ca(cat, c->parent) : NULL;
  }
  return n;
}

int crl_url_of(char *out, size_t size, const pki_catalog *cat, const pki_catalog_ca *ca,
               const char *base, int delta, pki_err *err) {
  int n;
  if (base != NULL) {
    size_t len = strlen(base);
    n = snprintf(out, size, "%s%s%s%s", base, len > 0 && base[len - 1] == '/' ? "" : "/",
                 ca->name, delta ? "-delta.crl" : ".crl");
  } else {
    const char *url = delta ? ca->delta_crl_url : ca->crl_url;
    if (url == NULL) {
      PKI_ERR(err, PKI_ERR_NOT_FOUND,
              "the catalogue (%s) sets no crl_url, so CA '%s' has no CRL URL: give a base URL",
              cat->source != NULL ? cat->source : "built in", ca->name);
      return 0;
    }
    n = snprintf(out, size, "%s", url);
  }
  if (n < 0 || (size_t)n >= size) {
    PKI_ERR(err, PKI_ERR_INVALID, "CRL URL too long");
    return 0;
  }
  return 1;
}

/* ---- printing ---- */

static void print_number(FILE *out, const uint8_t *n, size_t len, uint64_t as_u64) {
  if (as_u64 != UINT64_MAX) {
    fprintf(out, "%llu", (unsigned long long)as_u64);
  } else {
    fputs("0x", out);
    print_hex(out, n, len, "");
  }
}

void crl_print(FILE *out, const pki_crl *crl, const uint8_t *der, size_t len) {
  fprintf(out, "Certificate revocation list, %s, v%d\n", crl->is_delta ? "delta" : "complete",
          crl->version);
  fprintf(out, "  %-18s", "Issuer:");
  print_name(out, &crl->issuer);
  fprintf(out, "\n  %-18s", "Number:");
  if (crl->has_number) {
    print_number(out, crl->number, crl->number_len, crl->number_u64);
  } else {
    fputs("-", out);
  }
  if (crl->is_delta) {
    fprintf(out, "\n  %-18s", "Base number:");
    print_number(out, crl->base_number, crl->base_number_len, crl->base_number_u64);
  }
  fprintf(out, "\n  %-18s", "This update:");
  print_time(out, crl->this_update);
  fprintf(out, "\n  %-18s", "Next update:");
  if (crl->next_update != 0) {
    print_time(out, crl->next_update);
    if (crl->next_update <= (int64_t)time(NULL)) fputs(" (passed: stale)", out);
  } else {
    fputs("-", out);
  }
  fputc('\n', out);
  if (crl->aki_len > 0) {
    fprintf(out, "  %-18s", "Issuer key id:");
    print_hex(out, crl->aki, crl->aki_len, ":");
    fputc('\n', out);
  }
  if (crl->freshest_url[0] != '\0') fprintf(out, "  %-18s%s\n", "Delta CRL:", crl->freshest_url);
  fprintf(out, "  %-18s%zu\n", "Entries:", crl->num_entries);
  for (size_t i = 0; i < crl->num_entries; i++) {
    const pki_crl_entry *e = &crl->entries[i];
    char serial[2 * PKI_SERIAL_MAX + 1];
    pki_serial_to_hex(serial, &e->serial);
    fprintf(out, "    %s  revoked ", serial);
    print_time(out, e->revocation_date);
    const char *reason = e->reason > 0 ? pki_crl_reason_name(e->reason) : NULL;
    if (reason != NULL) fprintf(out, "  %s", reason);
    if (e->invalidity_date != 0) {
      fputs("  invalid since ", out);
      print_time(out, e->invalidity_date);
    }
    fputc('\n', out);
  }
  print_sha256_line(out, der, len);
}

/* ---- the commands ---- */

typedef struct crl_opts {
  const char *ca, *url, *out, *pki, *ca_file, *base_url, *catalog;
  int delta, pem;
  size_t max_bytes;
  uint64_t timeout_ms;
  const char *file; /* inspect */
} crl_opts;

enum {
  C_CA = 3000, C_DELTA, C_URL, C_OUT, C_PEM, C_PKI, C_CA_FILE, C_BASE_URL, C_MAX_SIZE,
  C_TIMEOUT, C_CATALOG,
};

static const struct option kCrlOptions[] = {
    {"ca", required_argument, NULL, C_CA},
    {"delta", no_argument, NULL, C_DELTA},
    {"url", required_argument, NULL, C_URL},
    {"out", required_argument, NULL, C_OUT},
    {"pem", no_argument, NULL, C_PEM},
    {"pki", required_argument, NULL, C_PKI},
    {"ca-file", required_argument, NULL, C_CA_FILE},
    {"base-url", required_argument, NULL, C_BASE_URL},
    {"max-size", required_argument, NULL, C_MAX_SIZE},
    {"timeout-ms", required_argument, NULL, C_TIMEOUT},
    {"catalog", required_argument, NULL, C_CATALOG},
    {NULL, 0, NULL, 0},
};

static int usage_fail(const char *fmt, const char *arg) {
  fprintf(stderr, "pkictl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", kCrlUsage);
  return 2;
}

static int fail(const pki_err *err) {
  fprintf(stderr, "pkictl: %s: %s\n", pki_err_code_name(err->code), err->msg);
  return 1;
}

static int parse_crl_options(crl_opts *o, int argc, char **argv, int inspect) {
  memset(o, 0, sizeof(*o));
  o->max_bytes = HTTP_GET_DEFAULT_MAX_BODY;
  o->timeout_ms = HTTP_GET_DEFAULT_TIMEOUT_MS;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", kCrlOptions, NULL)) != -1) {
    switch (c) {
      case C_CA: o->ca = optarg; break;
      case C_DELTA: o->delta = 1; break;
      case C_URL: o->url = optarg; break;
      case C_OUT: o->out = optarg; break;
      case C_PEM: o->pem = 1; break;
      case C_PKI: o->pki = optarg; break;
      case C_CA_FILE: o->ca_file = optarg; break;
      case C_BASE_URL: o->base_url = optarg; break;
      case C_CATALOG: o->catalog = optarg; break;
      case C_MAX_SIZE:
        if (!crl_parse_size(&o->max_bytes, optarg)) {
          return usage_fail("--max-size wants bytes, or 512K, 256M, 1G; not '%s'", optarg);
        }
        break;
      case C_TIMEOUT: {
        char *end = NULL;
        unsigned long long v = strtoull(optarg, &end, 10);
        if (end == optarg || *end != '\0' || v == 0 || v > 86400000ULL) {
          return usage_fail("--timeout-ms wants 1..86400000, not '%s'", optarg);
        }
        o->timeout_ms = v;
        break;
      }
      default:
        return usage_fail("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (inspect) {
    if (optind + 1 != argc) return usage_fail("inspect takes one FILE%s", "");
    o->file = argv[optind];
    if (o->ca != NULL || o->url != NULL || o->out != NULL || o->delta || o->pem ||
        o->base_url != NULL) {
      return usage_fail("inspect takes FILE, --pki, --ca-file and --catalog only%s", "");
    }
    return 0;
  }
  if (optind != argc) return usage_fail("unexpected argument '%s'", argv[optind]);
  if ((o->ca == NULL) == (o->url == NULL)) return usage_fail("give --ca NAME or --url URL%s", "");
  if (o->out == NULL) return usage_fail("--out FILE is required%s", "");
  if (o->url != NULL && (o->delta || o->base_url != NULL)) {
    return usage_fail("--delta and --base-url go with --ca, not --url%s", "");
  }
  if (o->pki == NULL && o->ca_file == NULL) {
    return usage_fail("the CRL is verified before it is written: give --pki DIR or "
                      "--ca-file FILE%s", "");
  }
  return 0;
}

/* held_crl reads FILE as the CRL held now, if it is one. */
static int held_crl(uint8_t **der, size_t *der_len, pki_crl *crl, const char *path) {
  uint8_t *text = NULL;
  size_t len = 0;
  pki_err e;
  pki_err_clear(&e);
  *der = NULL;
  int ok = pki_file_read(&text, &len, path, HTTP_GET_DEFAULT_MAX_BODY * 2, &e) &&
           crl_decode(der, der_len, text, len, &e) && pki_crl_parse(crl, *der, *der_len, &e);
  free(text);
  if (!ok) {
    free(*der);
    *der = NULL;
  }
  return ok;
}

/* read_etag reads FILE.etag: one entity-tag on one line. */
static void read_etag(char *out, size_t size, const char *path) {
  uint8_t *text = NULL;
  size_t len = 0;
  pki_err e;
  out[0] = '\0';
  if (!pki_file_read(&text, &len, path, 1024, &e)) return;
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
  if (len > 0 && len < size && memchr(text, '\n', len) == NULL) {
    memcpy(out, text, len);
    out[len] = '\0';
  }
  free(text);
}

static int cmd_fetch(const crl_opts *o, const pki_catalog *cat, pki_err *err) {
  char url[2048], ca_path[PKI_PATH_MAX], etag_path[PKI_PATH_MAX + 8];
  const pki_catalog_ca *ca = NULL;
  if (o->ca != NULL) {
    ca = pki_catalog_find_ca(cat, o->ca);
    if (ca == NULL) {
      PKI_ERR(err, PKI_ERR_NOT_FOUND, "no CA '%s' in the catalogue", o->ca);
      return 0;
    }
    if (!crl_url_of(url, sizeof(url), cat, ca, o->base_url, o->delta, err)) return 0;
  } else {
    snprintf(url, sizeof(url), "%s", o->url);
  }
  if (snprintf(etag_path, sizeof(etag_path), "%s.etag", o->out) >= (int)sizeof(etag_path)) {
    PKI_ERR(err, PKI_ERR_INVALID, "--out path too long");
    return 0;
  }
  /* What is held now: the floor for the new CRL's number, and the ETag to
   * ask with. */
  uint8_t *held_der = NULL;
  size_t held_len = 0;
  pki_crl held;
  memset(&held, 0, sizeof(held));
  int have_held = held_crl(&held_der, &held_len, &held, o->out);
  char etag[HTTP_GET_ETAG_MAX] = "";
  if (have_held) read_etag(etag, sizeof(etag), etag_path);

  uint8_t *ca_der = NULL;
  size_t ca_len = 0;
  int ok = 0;
  crl_fetched f;
  memset(&f, 0, sizeof(f));
  if (o->ca_file != NULL) {
    if (!pki_tree_read_cert(&ca_der, &ca_len, o->ca_file, err)) goto out;
  } else if (ca != NULL) {
    if (!pki_tree_ca_path(ca_path, sizeof(ca_path), o->pki, ca, PKI_TREE_CA_CERT, err) ||
        !pki_tree_read_cert(&ca_der, &ca_len, ca_path, err)) {
      goto out;
    }
  }
  crl_source src = {
      .url = url,
      .etag = etag[0] != '\0' ? etag : NULL,
      .ca_der = ca_der,
      .ca_len = ca_len,
      .want = ca == NULL ? CRL_WANT_ANY : o->delta ? CRL_WANT_DELTA : CRL_WANT_COMPLETE,
      .max_bytes = o->max_bytes,
      .timeout_ms = o->timeout_ms,
  };
  /* --url with --pki alone: the CA is the tree's that the CRL names. */
  src.cat = cat;
  src.pki = o->pki;
  src.held = have_held ? &held : NULL;
  if (!crl_fetch_checked(&f, &src, err)) goto out;
  if (f.outcome == CRL_NOT_MODIFIED || f.outcome == CRL_SAME) {
    printf("%s: not modified (%s)\n", o->out, url);
    /* A 200 with the same number may bring a new ETag: keep it. */
    if (f.outcome == CRL_SAME && f.etag[0] != '\0' && strcmp(f.etag, etag) != 0) {
      char line[HTTP_GET_ETAG_MAX + 2];
      int n = snprintf(line, sizeof(line), "%s\n", f.etag);
      if (!pki_file_write_atomic(etag_path, line, (size_t)n, 0644, err)) goto out;
    }
    ok = 1;
    goto out;
  }
  char *pem = NULL;
  size_t pem_len = 0;
  if (o->pem && !pki_crl_to_pem(&pem, &pem_len, f.der, f.der_len, err)) goto out;
  ok = pki_file_write_atomic(o->out, o->pem ? (const void *)pem : f.der,
                             o->pem ? pem_len : f.der_len, 0644, err);
  free(pem);
  if (!ok) goto out;
  /* The ETag last: it describes the file now in place. */
  if (f.etag[0] != '\0') {
    char line[HTTP_GET_ETAG_MAX + 2];
    int n = snprintf(line, sizeof(line), "%s\n", f.etag);
    ok = pki_file_write_atomic(etag_path, line, (size_t)n, 0644, err);
  } else if (unlink(etag_path) != 0 && errno != ENOENT) {
    PKI_ERR(err, PKI_ERR_IO, "%s: %s", etag_path, strerror(errno));
    ok = 0;
  }
  if (!ok) goto out;
  printf("%s: written (%s)\n  %s CRL number ", o->out, url, f.crl.is_delta ? "delta" : "complete");
  print_number(stdout, f.crl.number, f.crl.number_len, f.crl.number_u64);
  printf(", %zu entries, this update ", f.crl.num_entries);
  print_time(stdout, f.crl.this_update);
  printf(", next update ");
  print_time(stdout, f.crl.next_update);
  printf("\n");
  if (f.stale) {
    fprintf(stderr, "pkictl: warning: %s: its nextUpdate has passed; relying parties will refuse "
                    "it (RFC 5280 6.3.3)\n", url);
  }
out:
  crl_fetched_cleanup(&f);
  pki_crl_cleanup(&held);
  free(held_der);
  free(ca_der);
  return ok;
}

/* inspect_one prints one CRL and, when a CA certificate can be found,
 * whether it verifies. */
static void inspect_one(const crl_opts *o, const pki_catalog *cat, const pki_crl *crl,
                        const uint8_t *der, size_t len) {
  crl_print(stdout, crl, der, len);
  uint8_t *ca_der = NULL;
  size_t ca_len = 0;
  pki_err e;
  pki_err_clear(&e);
  int have = 0;
  if (o->ca_file != NULL) {
    have = pki_tree_read_cert(&ca_der, &ca_len, o->ca_file, &e);
  } else if (o->pki != NULL) {
    have = find_issuer_cert(&ca_der, &ca_len, cat, o->pki, crl, &e);
  }
  if (o->ca_file != NULL || o->pki != NULL) {
    if (have && crl_check_issuer(crl, ca_der, ca_len, &e)) {
      printf("  %-18s%s\n", "Signature:", "verified");
    } else {
      printf("  %-18sNOT verified: %s\n", "Signature:", e.msg);
    }
  }
  free(ca_der);
}

static int cmd_inspect(const crl_opts *o, const pki_catalog *cat, pki_err *err) {
  uint8_t *text = NULL;
  size_t len = 0;
  if (!pki_file_read(&text, &len, o->file, HTTP_GET_DEFAULT_MAX_BODY * 2, err)) return 0;
  int ok = 0;
  size_t count = 0, pos = 0;
  int pem = memmem(text, len, "-----BEGIN ", 11) != NULL;
  for (;;) {
    uint8_t *der = NULL;
    size_t der_len = 0;
    pki_crl crl;
    memset(&crl, 0, sizeof(crl));
    int got = pem ? crl_next_pem(&der, &der_len, (const char *)text, len, &pos, err)
                  : count == 0 && crl_decode(&der, &der_len, text, len, err);
    if (!got) {
      /* The end of a PEM file's CRLs is no error once one was read. */
      ok = count > 0 && (!pem || err->code == PKI_ERR_NOT_FOUND);
      if (pem && count == 0 && err->code == PKI_ERR_NOT_FOUND) {
        PKI_ERR(err, PKI_ERR_NOT_FOUND, "no X509 CRL block in the file");
      }
      if (count > 0 && !pem) ok = 1;
      break;
    }
    if (!pki_crl_parse(&crl, der, der_len, err)) {
      free(der);
      ok = 0;
      break;
    }
    if (count > 0) fputc('\n', stdout);
    inspect_one(o, cat, &crl, der, der_len);
    pki_crl_cleanup(&crl);
    free(der);
    count++;
  }
  if (!ok) pki_err_prefix(err, "%s: ", o->file);
  free(text);
  return ok;
}

int crl_cmd_main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "fetch") != 0 && strcmp(argv[1], "inspect") != 0)) {
    return usage_fail("crl takes fetch or inspect%s", "");
  }
  int inspect = strcmp(argv[1], "inspect") == 0;
  crl_opts o;
  int rc = parse_crl_options(&o, argc - 1, argv + 1, inspect);
  if (rc != 0) return rc;
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = o.catalog != NULL ? pki_catalog_load_file(o.catalog, &err)
                                       : pki_catalog_default(&err);
  if (cat == NULL) return fail(&err);
  int ok = inspect ? cmd_inspect(&o, cat, &err) : cmd_fetch(&o, cat, &err);
  pki_catalog_free(cat);
  return ok ? 0 : fail(&err);
}
