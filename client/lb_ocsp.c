/* lb_ocsp.c: one OCSP exchange with pkid's responder (see lb_ocsp.h). */
#include "client/lb_ocsp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/http_get.h"

/* crypto_fail: a BoringSSL call refused what it was given (lib/err.h
 * tells that from running out of memory). */
static int crypto_fail(pki_err *err, const char *what) {
  PKI_ERR_CRYPTO(err, PKI_ERR_INVALID, "%s", what);
  return 0;
}


void lb_ocsp_cleanup(lb_ocsp *o) {
  free(o->der);
  memset(o, 0, sizeof(*o));
}

static const uint8_t kOidSha1[] = {0x2b, 0x0e, 0x03, 0x02, 0x1a};
static const uint8_t kOidBasic[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01};
static const uint8_t kOidEcdsaSha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const uint8_t kOidEcdsaSha384[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
static const uint8_t kOidRsaSha256[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b};

/* issuer_hashes: the CertID's issuerNameHash (SHA-1 of the issuer's
 * subject DER) and issuerKeyHash (SHA-1 of its subjectPublicKey's value),
 * RFC 6960 4.1.1. */
static int issuer_hashes(X509 *issuer, uint8_t name_hash[20], uint8_t key_hash[20]) {
  uint8_t *name = NULL;
  int name_len = i2d_X509_NAME(X509_get_subject_name(issuer), &name);
  if (name_len <= 0) return 0;
  SHA1(name, (size_t)name_len, name_hash);
  OPENSSL_free(name);
  const ASN1_BIT_STRING *key = X509_get0_pubkey_bitstr(issuer);
  if (key == NULL) return 0;
  SHA1(ASN1_STRING_get0_data(key), (size_t)ASN1_STRING_length(key), key_hash);
  return 1;
}

/* ocsp_request builds an OCSPRequest with one Request and no extensions,
 * as RFC 5019 2.1.1 has clients send (SHA-1 CertID). */
int lb_ocsp_request(uint8_t **out, size_t *out_len, X509 *issuer, const ASN1_INTEGER *serial) {
  uint8_t nh[20], kh[20];
  if (!issuer_hashes(issuer, nh, kh)) return 0;
  uint8_t *ser = NULL;
  int ser_len = i2d_ASN1_INTEGER(serial, &ser);
  if (ser_len <= 0) return 0;
  CBB cbb, req, tbs, list, one, id, alg, oid;
  int ok = CBB_init(&cbb, 256) && CBB_add_asn1(&cbb, &req, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&req, &tbs, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&tbs, &list, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&list, &one, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&one, &id, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&id, &alg, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&alg, &oid, CBS_ASN1_OBJECT) &&
           CBB_add_bytes(&oid, kOidSha1, sizeof(kOidSha1)) &&
           CBB_add_asn1(&alg, &oid, CBS_ASN1_NULL) &&
           CBB_add_asn1_octet_string(&id, nh, sizeof(nh)) &&
           CBB_add_asn1_octet_string(&id, kh, sizeof(kh)) &&
           CBB_add_bytes(&id, ser, (size_t)ser_len) && CBB_finish(&cbb, out, out_len);
  if (!ok) CBB_cleanup(&cbb);
  OPENSSL_free(ser);
  return ok;
}

/* gtime reads a GeneralizedTime "YYYYMMDDHHMMSSZ" (RFC 5280 4.1.2.5.2,
 * which RFC 6960 4.2.1 uses). */
static int gtime(const CBS *in, int64_t *out) {
  const uint8_t *p = CBS_data(in);
  if (CBS_len(in) != 15 || p[14] != 'Z') return 0;
  int v[14];
  for (int i = 0; i < 14; i++) {
    if (p[i] < '0' || p[i] > '9') return 0;
    v[i] = p[i] - '0';
  }
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3] - 1900;
  tm.tm_mon = v[4] * 10 + v[5] - 1;
  tm.tm_mday = v[6] * 10 + v[7];
  tm.tm_hour = v[8] * 10 + v[9];
  tm.tm_min = v[10] * 10 + v[11];
  tm.tm_sec = v[12] * 10 + v[13];
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60) {
    return 0;
  }
  *out = (int64_t)timegm(&tm);
  return 1;
}

static int oid_is(const CBS *oid, const uint8_t *want, size_t len) {
  return CBS_len(oid) == len && memcmp(CBS_data(oid), want, len) == 0;
}

int lb_ocsp_parse(lb_ocsp *out, const uint8_t *der, size_t len, X509 *issuer,
                  const ASN1_INTEGER *serial, int64_t now, pki_err *err) {
  memset(out, 0, sizeof(*out));
  CBS in, resp, status, rb_outer, rb, oid, octet, basic, tbs_elem, tbs, sigalg, sig_oid, sig;
  CBS_init(&in, der, len);
  uint64_t st = 0;
  if (!CBS_get_asn1(&in, &resp, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
      !CBS_get_asn1(&resp, &status, CBS_ASN1_ENUMERATED) || CBS_len(&status) != 1) {
    PKI_ERR(err, PKI_ERR_INVALID, "the OCSP response does not parse");
    return 0;
  }
  st = CBS_data(&status)[0];
  if (st != 0) {
    /* OCSPResponseStatus (RFC 6960 4.2.1): 1 malformedRequest, 2
     * internalError, 3 tryLater, 6 unauthorized. */
    PKI_ERR(err, PKI_ERR_DENIED, "the OCSP responder answered status %u, not successful",
            (unsigned)st);
    return 0;
  }
  if (!CBS_get_asn1(&resp, &rb_outer, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
      !CBS_get_asn1(&rb_outer, &rb, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&rb, &oid, CBS_ASN1_OBJECT) || !oid_is(&oid, kOidBasic, sizeof(kOidBasic)) ||
      !CBS_get_asn1(&rb, &octet, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1(&octet, &basic, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&basic, &tbs_elem, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&basic, &sigalg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&sigalg, &sig_oid, CBS_ASN1_OBJECT) ||
      !CBS_get_asn1(&basic, &sig, CBS_ASN1_BITSTRING) || CBS_len(&sig) < 2 ||
      CBS_data(&sig)[0] != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "the OCSP response is not a basic response that parses");
    return 0;
  }
  CBS responses, produced, signed_part = tbs_elem;
  if (!CBS_get_asn1(&tbs_elem, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBS_get_optional_asn1(&tbs, NULL, NULL, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
      !CBS_get_any_asn1_element(&tbs, NULL, NULL, NULL) || /* responderID */
      !CBS_get_asn1(&tbs, &produced, CBS_ASN1_GENERALIZEDTIME) ||
      !CBS_get_asn1(&tbs, &responses, CBS_ASN1_SEQUENCE)) {
    PKI_ERR(err, PKI_ERR_INVALID, "the OCSP ResponseData does not parse");
    return 0;
  }
  uint8_t nh[20], kh[20];
  if (!issuer_hashes(issuer, nh, kh)) return crypto_fail(err, "issuer hashes");
  uint8_t *ser = NULL;
  int ser_len = i2d_ASN1_INTEGER(serial, &ser);
  CBS want_serial;
  CBS_init(&want_serial, ser, ser_len > 0 ? (size_t)ser_len : 0);
  CBS want_serial_value;
  int have_want = ser_len > 0 && CBS_get_asn1(&want_serial, &want_serial_value, CBS_ASN1_INTEGER);
  int found = 0;
  while (have_want && !found && CBS_len(&responses) > 0) {
    CBS single, id, alg, alg_oid, name_hash, key_hash, sn, cs, this_u;
    unsigned tag = 0;
    if (!CBS_get_asn1(&responses, &single, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&single, &id, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&id, &alg, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&alg, &alg_oid, CBS_ASN1_OBJECT) ||
        !CBS_get_asn1(&id, &name_hash, CBS_ASN1_OCTETSTRING) ||
        !CBS_get_asn1(&id, &key_hash, CBS_ASN1_OCTETSTRING) ||
        !CBS_get_asn1(&id, &sn, CBS_ASN1_INTEGER) ||
        !CBS_get_any_asn1(&single, &cs, &tag) ||
        !CBS_get_asn1(&single, &this_u, CBS_ASN1_GENERALIZEDTIME)) {
      break;
    }
    if (!oid_is(&alg_oid, kOidSha1, sizeof(kOidSha1)) || CBS_len(&name_hash) != 20 ||
        memcmp(CBS_data(&name_hash), nh, 20) != 0 || CBS_len(&key_hash) != 20 ||
        memcmp(CBS_data(&key_hash), kh, 20) != 0 || !CBS_mem_equal(&sn, CBS_data(&want_serial_value),
                                                                    CBS_len(&want_serial_value))) {
      continue;
    }
    if (tag == (CBS_ASN1_CONTEXT_SPECIFIC | 0)) {
      out->status = 0;
    } else if (tag == (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1)) {
      out->status = 1;
    } else if (tag == (CBS_ASN1_CONTEXT_SPECIFIC | 2)) {
      out->status = 2;
    } else {
      break;
    }
    CBS next_outer, next_u;
    int has_next = 0;
    if (!gtime(&this_u, &out->this_update) ||
        !CBS_get_optional_asn1(&single, &next_outer, &has_next,
                               CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
        (has_next && (!CBS_get_asn1(&next_outer, &next_u, CBS_ASN1_GENERALIZEDTIME) ||
                      !gtime(&next_u, &out->next_update)))) {
      break;
    }
    found = 1;
  }
  OPENSSL_free(ser);
  if (!found) {
    memset(out, 0, sizeof(*out));
    PKI_ERR(err, PKI_ERR_INVALID, "the OCSP response says nothing about this certificate");
    return 0;
  }
  /* The responder is the issuing CA itself (RFC 6960 4.2.2.2, how pkid
   * answers): its signature over tbsResponseData, with the CA's key. */
  const EVP_MD *md = oid_is(&sig_oid, kOidEcdsaSha256, sizeof(kOidEcdsaSha256)) ? EVP_sha256()
                     : oid_is(&sig_oid, kOidEcdsaSha384, sizeof(kOidEcdsaSha384)) ? EVP_sha384()
                     : oid_is(&sig_oid, kOidRsaSha256, sizeof(kOidRsaSha256))     ? EVP_sha256()
                                                                                   : NULL;
  EVP_PKEY *ca_key = X509_get_pubkey(issuer);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int sig_ok = md != NULL && ca_key != NULL && ctx != NULL &&
               EVP_DigestVerifyInit(ctx, NULL, md, NULL, ca_key) &&
               EVP_DigestVerify(ctx, CBS_data(&sig) + 1, CBS_len(&sig) - 1, CBS_data(&signed_part),
                                CBS_len(&signed_part));
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(ca_key);
  ERR_clear_error();
  if (!sig_ok) {
    memset(out, 0, sizeof(*out));
    PKI_ERR(err, PKI_ERR_DENIED, "the OCSP response is not signed by the certificate's issuer");
    return 0;
  }
  /* RFC 5019 4: a response whose nextUpdate has passed is not current;
   * one from the future means a clock is wrong (a few minutes allowed). */
  if ((out->next_update != 0 && out->next_update < now) || out->this_update > now + 300) {
    memset(out, 0, sizeof(*out));
    PKI_ERR(err, PKI_ERR_INVALID, "the OCSP response is not current");
    return 0;
  }
  out->der = malloc(len);
  if (out->der == NULL) {
    memset(out, 0, sizeof(*out));
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(out->der, der, len);
  out->der_len = len;
  return 1;
}

int lb_ocsp_get(lb_ocsp *out, const char *base, X509 *cert, X509 *issuer, uint64_t timeout_ms,
                pki_err *err) {
  memset(out, 0, sizeof(out[0]));
  uint8_t *req = NULL;
  size_t req_len = 0;
  if (!lb_ocsp_request(&req, &req_len, issuer, X509_get_serialNumber(cert))) {
    return crypto_fail(err, "OCSP request");
  }
  /* RFC 6960 Appendix A.1 (and RFC 5019 5): GET {url}/{url-encoding of the
   * base64 of the DER request}. */
  char b64[1024], url[4096];
  size_t need = 0, b = 0;
  if (EVP_EncodedLength(&need, req_len) && need <= sizeof(b64)) {
    b = EVP_EncodeBlock((uint8_t *)b64, req, req_len);
  }
  OPENSSL_free(req);
  if (b == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "OCSP request too large");
    return 0;
  }
  size_t n = (size_t)snprintf(url, sizeof(url), "%s%s", base,
                              base[strlen(base) - 1] == '/' ? "" : "/");
  for (size_t i = 0; i < b && n + 4 < sizeof(url); i++) {
    char ch = b64[i];
    if (ch == '+' || ch == '/' || ch == '=') {
      n += (size_t)snprintf(url + n, sizeof(url) - n, "%%%02X", (unsigned char)ch);
    } else {
      url[n++] = ch;
    }
  }
  url[n] = '\0';
  http_get_request hr;
  memset(&hr, 0, sizeof(hr));
  hr.url = url;
  hr.max_body = 65536;
  hr.timeout_ms = timeout_ms;
  http_get_response resp;
  if (!http_get(&resp, &hr, err)) {
    http_get_response_cleanup(&resp);
    pki_err_prefix(err, "OCSP: ");
    return 0;
  }
  if (resp.status != 200 || resp.body == NULL) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "OCSP: the responder answered HTTP %d", resp.status);
    http_get_response_cleanup(&resp);
    return 0;
  }
  int ok = lb_ocsp_parse(out, resp.body, resp.body_len, issuer, X509_get_serialNumber(cert),
                         (int64_t)time(NULL), err);
  http_get_response_cleanup(&resp);
  return ok;
}

