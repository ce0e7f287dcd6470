/* ocsp_speed measures lib/ocsp on one core, with an ECDSA P-256 CA:
 *
 *  - responses signed per second when a CA's responses are pre-produced in
 *    bulk (pki_ocsp_signer_sign_each, batches of 1000), the refresh path;
 *  - responses built and signed one at a time with pki_ocsp_response_build
 *    (the CA's hashes recomputed each time), the issuance/revocation path;
 *  - requests parsed per second (pki_ocsp_request_parse of a SHA-1 request
 *    with a nonce, as `openssl ocsp` sends);
 *  - responses served per second from memory: parse, match the CertID to
 *    the CA, binary search of 100,000 pre-signed responses by serial, copy
 *    the response out: the responder's hot path without HTTP.
 *
 * Usage: ocsp_speed [seconds per measurement, default 1]. Prints JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "lib/cert.h"
#include "lib/der.h"
#include "lib/key.h"
#include "lib/ocsp.h"
#include "lib/serial.h"

#define BATCH 1000
#define TABLE 100000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const pki_err *err) {
  fprintf(stderr, "ocsp_speed: %s: %s\n", what, err->msg);
  exit(1);
}

typedef struct entry {
  pki_serial serial;
  uint8_t *der;
  size_t len;
} entry;

static int entry_cmp(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->serial.len != y->serial.len) return x->serial.len < y->serial.len ? -1 : 1;
  return memcmp(x->serial.bytes, y->serial.bytes, x->serial.len);
}

static void make_single(pki_ocsp_single *s, const pki_ocsp_hashes *h, uint64_t seq,
                        int64_t now) {
  pki_serial serial;
  pki_err err;
  if (!pki_serial_make(&serial, 1, seq, &err)) die("serial", &err);
  memset(s, 0, sizeof(*s));
  pki_ocsp_cert_id_make(&s->id, h, PKI_OCSP_HASH_SHA1, &serial);
  s->status = seq % 10 == 0 ? PKI_OCSP_REVOKED : PKI_OCSP_GOOD;
  s->revocation_time = now - 3600;
  s->revocation_reason = 1;
  s->this_update = now;
  s->next_update = now + 4 * 86400;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  pki_err err;
  pki_issuer ca;
  memset(&ca, 0, sizeof(ca));
  ca.key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  if (ca.key == NULL) die("key", &err);
  ca.key_type = PKI_KEY_ECDSA_P256;
  CBB cbb;
  if (!CBB_init(&cbb, 64) || !pki_der_add_name(&cbb, "Bench", "Bench OCSP CA") ||
      !pki_der_finish(&cbb, &ca.name, &ca.name_len)) {
    return 1;
  }
  ca.ski_len = 20;
  if (!pki_key_identifier(ca.ski, ca.key, &err)) die("ski", &err);
  pki_ocsp_signer signer;
  if (!pki_ocsp_signer_init(&signer, &ca, &err)) die("signer", &err);
  int64_t now = (int64_t)time(NULL);

  /* 1. Bulk pre-production. */
  static pki_ocsp_single singles[BATCH];
  static uint8_t *outs[BATCH];
  static size_t lens[BATCH];
  uint64_t seq = 1;
  long n = 0;
  double start = now_s(), end;
  do {
    for (int i = 0; i < BATCH; i++) make_single(&singles[i], &signer.hashes, seq++, now);
    if (!pki_ocsp_signer_sign_each(&signer, outs, lens, singles, BATCH, &err)) {
      die("sign_each", &err);
    }
    for (int i = 0; i < BATCH; i++) free(outs[i]);
    n += BATCH;
    end = now_s();
  } while (end - start < secs);
  double bulk_rate = (double)n / (end - start);

  /* 2. One at a time, from the issuer. */
  n = 0;
  start = now_s();
  do {
    for (int i = 0; i < 100; i++) {
      pki_ocsp_single s;
      make_single(&s, &signer.hashes, seq++, now);
      uint8_t *der;
      size_t len;
      if (!pki_ocsp_response_build(&der, &len, &ca, &s, &err)) die("build", &err);
      free(der);
    }
    n += 100;
    end = now_s();
  } while (end - start < secs);
  double single_rate = (double)n / (end - start);

  /* The table the responder serves from: TABLE pre-signed responses. */
  entry *table = calloc(TABLE, sizeof(entry));
  if (table == NULL) return 1;
  double fill_start = now_s();
  for (size_t done = 0; done < TABLE; done += BATCH) {
    for (int i = 0; i < BATCH; i++) make_single(&singles[i], &signer.hashes, seq++, now);
    if (!pki_ocsp_signer_sign_each(&signer, outs, lens, singles, BATCH, &err)) {
      die("sign_each", &err);
    }
    for (int i = 0; i < BATCH; i++) {
      entry *e = &table[done + (size_t)i];
      e->serial.len = singles[i].id.serial_len;
      memcpy(e->serial.bytes, singles[i].id.serial, e->serial.len);
      e->der = outs[i];
      e->len = lens[i];
    }
  }
  double fill_s = now_s() - fill_start;
  qsort(table, TABLE, sizeof(entry), entry_cmp);

  /* Requests for certificates in the table, with nonces, as openssl sends. */
  enum { NREQ = 1024 };
  static uint8_t *reqs[NREQ];
  static size_t req_lens[NREQ];
  for (int i = 0; i < NREQ; i++) {
    const entry *e = &table[((size_t)i * 7919u) % TABLE];
    CBB req, tbs, list, one, id, alg, null, serial, el, exts, ext, val;
    static const uint8_t nonce[18] = {0x04, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    if (!CBB_init(&cbb, 160) || !CBB_add_asn1(&cbb, &req, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&req, &tbs, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&tbs, &list, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&list, &one, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&one, &id, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&id, &alg, CBS_ASN1_SEQUENCE) ||
        !pki_der_add_oid(&alg, PKI_OID_SHA1, sizeof(PKI_OID_SHA1)) ||
        !CBB_add_asn1(&alg, &null, CBS_ASN1_NULL) ||
        !CBB_add_asn1_octet_string(&id, signer.hashes.name_hash[0], 20) ||
        !CBB_add_asn1_octet_string(&id, signer.hashes.key_hash[0], 20) ||
        !CBB_add_asn1(&id, &serial, CBS_ASN1_INTEGER) ||
        !CBB_add_bytes(&serial, e->serial.bytes, e->serial.len) ||
        !CBB_add_asn1(&tbs, &el, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 2) ||
        !CBB_add_asn1(&el, &exts, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
        !pki_der_add_oid(&ext, PKI_OID_OCSP_NONCE, sizeof(PKI_OID_OCSP_NONCE)) ||
        !CBB_add_asn1(&ext, &val, CBS_ASN1_OCTETSTRING) ||
        !CBB_add_bytes(&val, nonce, sizeof(nonce)) ||
        !pki_der_finish(&cbb, &reqs[i], &req_lens[i])) {
      return 1;
    }
  }

  /* 3. Request parse alone. */
  n = 0;
  start = now_s();
  do {
    for (int i = 0; i < NREQ; i++) {
      pki_ocsp_request r;
      if (!pki_ocsp_request_parse(&r, reqs[i], req_lens[i], &err)) die("parse", &err);
    }
    n += NREQ;
    end = now_s();
  } while (end - start < secs);
  double parse_rate = (double)n / (end - start);

  /* 4. Serve from memory: parse, match, look up, copy out. */
  static uint8_t out_buf[4096];
  size_t served_bytes = 0;
  n = 0;
  start = now_s();
  do {
    for (int i = 0; i < NREQ; i++) {
      pki_ocsp_request r;
      const uint8_t *resp;
      size_t resp_len;
      if (!pki_ocsp_request_parse(&r, reqs[i], req_lens[i], &err)) {
        resp = pki_ocsp_malformed(&resp_len);
      } else if (!pki_ocsp_cert_id_matches(&r.ids[0], &signer.hashes)) {
        resp = pki_ocsp_error_response(PKI_OCSP_UNAUTHORIZED, &resp_len);
      } else {
        entry key;
        key.serial.len = r.ids[0].serial_len;
        memcpy(key.serial.bytes, r.ids[0].serial, key.serial.len);
        const entry *e = bsearch(&key, table, TABLE, sizeof(entry), entry_cmp);
        if (e == NULL) die("lookup", &err);
        resp = e->der;
        resp_len = e->len;
      }
      memcpy(out_buf, resp, resp_len);
      served_bytes += resp_len;
    }
    n += NREQ;
    end = now_s();
  } while (end - start < secs);
  double serve_rate = (double)n / (end - start);

  printf("{\"ocsp_responses_signed_per_s_bulk\": %.0f, "
         "\"ocsp_responses_signed_per_s_single\": %.0f, "
         "\"ocsp_table_fill_s_for_%d\": %.2f, "
         "\"ocsp_requests_parsed_per_s\": %.0f, "
         "\"ocsp_responses_served_from_memory_per_s\": %.0f, "
         "\"ocsp_response_bytes\": %zu}\n",
         bulk_rate, single_rate, TABLE, fill_s, parse_rate, serve_rate,
         served_bytes / (size_t)n);
  for (int i = 0; i < NREQ; i++) free(reqs[i]);
  for (size_t i = 0; i < TABLE; i++) free(table[i].der);
  free(table);
  EVP_PKEY_free(ca.key);
  free(ca.name);
  return 0;
}
