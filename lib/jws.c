#include "lib/jws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "lib/base64.h"

#define B64URL (PKI_BASE64_URL | PKI_BASE64_NO_PAD)

/* --- helpers ----------------------------------------------------------- */

/* unb64 decodes base64url without padding (RFC 7515 2) into a malloc'd
 * buffer. */
static int unb64(uint8_t **out, size_t *out_len, const char *in, size_t len, const char *what,
                 pki_err *err) {
  size_t cap = pki_base64_max_decoded_len(len) + 1;
  if ((*out = malloc(cap)) == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  if (!pki_base64_decode(*out, cap, out_len, in, len, B64URL, err)) {
    pki_err_prefix(err, "%s: ", what);
    free(*out);
    *out = NULL;
    return 0;
  }
  return 1;
}

/* member_string gives |obj|'s string member |name| (NULL and 1 when it is
 * absent; 0 when it is there and not a string). */
static int member_string(const char **out, size_t *out_len, json_t *obj, const char *name,
                         pki_err *err) {
  json_t *v = json_object_get(obj, name);
  *out = NULL;
  *out_len = 0;
  if (v == NULL) return 1;
  if (!json_is_string(v)) {
    PKI_ERR(err, PKI_ERR_INVALID, "\"%s\" is not a string", name);
    return 0;
  }
  *out = json_string_value(v);
  *out_len = json_string_length(v);
  return 1;
}

static int required_string(const char **out, size_t *out_len, json_t *obj, const char *name,
                           pki_err *err) {
  if (!member_string(out, out_len, obj, name, err)) return 0;
  if (*out == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "no \"%s\"", name);
    return 0;
  }
  return 1;
}

/* copy_string copies a JSON string that must hold no NUL. */
static int copy_string(char **out, const char *s, size_t len, const char *name, pki_err *err) {
  if (s == NULL) return 1;
  if (strlen(s) != len) {
    PKI_ERR(err, PKI_ERR_INVALID, "\"%s\" holds a NUL", name);
    return 0;
  }
  if ((*out = strdup(s)) == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  return 1;
}

/* load_object parses |len| bytes of JSON that must be one object; a member
 * named twice is refused (RFC 8259 4 leaves it to the parser; a signer and
 * a verifier that read different values must not both be satisfied). */
static json_t *load_object(const void *text, size_t len, const char *what, pki_err *err) {
  json_error_t jerr;
  json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (v == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s is not JSON: %s (column %d)", what, jerr.text,
            jerr.column);
    return NULL;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    PKI_ERR(err, PKI_ERR_INVALID, "%s is not a JSON object", what);
    return NULL;
  }
  return v;
}

/* --- JWK (RFC 7517, RFC 7518 6, RFC 8037 2) ------------------------------ */

/* bn_member decodes a base64url member into a BIGNUM of at most |max|
 * octets, or exactly |exact| when not 0; |minimal| refuses a leading zero
 * octet (RFC 7518 6.3.1.1). */
static BIGNUM *bn_member(json_t *jwk, const char *name, size_t exact, size_t max, int minimal,
                         pki_err *err) {
  const char *s;
  size_t len;
  if (!required_string(&s, &len, jwk, name, err)) return NULL;
  uint8_t *bytes;
  size_t n;
  if (!unb64(&bytes, &n, s, len, name, err)) return NULL;
  BIGNUM *bn = NULL;
  if ((exact != 0 && n != exact) || n == 0 || n > max || (minimal && bytes[0] == 0)) {
    PKI_ERR(err, PKI_ERR_INVALID, "JWK \"%s\" has %zu octets, which its key type does not allow",
            name, n);
  } else if ((bn = BN_bin2bn(bytes, n, NULL)) == NULL) {
    PKI_ERR_OOM(err);
  }
  free(bytes);
  return bn;
}

static EVP_PKEY *ec_key(json_t *jwk, pki_err *err) {
  const char *crv;
  size_t crv_len;
  if (!required_string(&crv, &crv_len, jwk, "crv", err)) return NULL;
  int nid;
  size_t width;
  if (strcmp(crv, "P-256") == 0) {
    nid = NID_X9_62_prime256v1;
    width = 32;
  } else if (strcmp(crv, "P-384") == 0) {
    nid = NID_secp384r1;
    width = 48;
  } else {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "JWK curve \"%s\" is not P-256 or P-384", crv);
    return NULL;
  }
  /* RFC 7518 6.2.1.2: x and y are the full width of the curve. */
  BIGNUM *x = bn_member(jwk, "x", width, width, 0, err);
  BIGNUM *y = x != NULL ? bn_member(jwk, "y", width, width, 0, err) : NULL;
  EC_KEY *ec = y != NULL ? EC_KEY_new_by_curve_name(nid) : NULL;
  EVP_PKEY *pkey = NULL;
  if (ec != NULL) {
    /* It checks that the point is on the curve. */
    if (!EC_KEY_set_public_key_affine_coordinates(ec, x, y)) {
      PKI_ERR(err, PKI_ERR_INVALID, "JWK x and y are not a point of %s", crv);
    } else if ((pkey = EVP_PKEY_new()) == NULL || !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
      EVP_PKEY_free(pkey);
      pkey = NULL;
      PKI_ERR_OOM(err);
    } else {
      ec = NULL;
    }
  }
  EC_KEY_free(ec);
  BN_free(x);
  BN_free(y);
  ERR_clear_error();
  return pkey;
}

static EVP_PKEY *rsa_key(json_t *jwk, pki_err *err) {
  BIGNUM *n = bn_member(jwk, "n", 0, 512, 1, err);
  BIGNUM *e = n != NULL ? bn_member(jwk, "e", 0, 8, 1, err) : NULL;
  if (e == NULL) {
    BN_free(n);
    return NULL;
  }
  unsigned bits = BN_num_bits(n);
  if (bits < 2048 || bits > 4096 || !BN_is_odd(e) || BN_is_one(e)) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "JWK RSA key of %u bits or its exponent is not one pkid takes (2048 to 4096 bits, "
            "an odd exponent above 1)",
            bits);
    BN_free(n);
    BN_free(e);
    return NULL;
  }
  RSA *rsa = RSA_new();
  EVP_PKEY *pkey = rsa != NULL ? EVP_PKEY_new() : NULL;
  if (pkey == NULL || !RSA_set0_key(rsa, n, e, NULL)) {
    RSA_free(rsa);
    EVP_PKEY_free(pkey);
    BN_free(n);
    BN_free(e);
    PKI_ERR_OOM(err);
    return NULL;
  }
  EVP_PKEY_assign_RSA(pkey, rsa);
  return pkey;
}

static EVP_PKEY *okp_key(json_t *jwk, pki_err *err) {
  const char *crv, *x;
  size_t crv_len, x_len;
  if (!required_string(&crv, &crv_len, jwk, "crv", err)) return NULL;
  if (strcmp(crv, "Ed25519") != 0) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "JWK OKP curve \"%s\" is not Ed25519", crv);
    return NULL;
  }
  if (!required_string(&x, &x_len, jwk, "x", err)) return NULL;
  uint8_t *raw;
  size_t raw_len;
  if (!unb64(&raw, &raw_len, x, x_len, "x", err)) return NULL;
  EVP_PKEY *pkey = raw_len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, 32)
                                 : NULL;
  if (pkey == NULL) PKI_ERR(err, PKI_ERR_INVALID, "JWK Ed25519 \"x\" is not 32 octets");
  free(raw);
  return pkey;
}

static EVP_PKEY *jwk_key(json_t *jwk, pki_err *err) {
  if (!json_is_object(jwk)) {
    PKI_ERR(err, PKI_ERR_INVALID, "\"jwk\" is not a JSON object");
    return NULL;
  }
  /* A private key's members (RFC 7518 6.2.2, 6.3.2; RFC 8037 2): a client
   * that sends its private key has lost it; refuse rather than use it. */
  static const char *const kPrivate[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
  for (size_t i = 0; i < sizeof(kPrivate) / sizeof(kPrivate[0]); i++) {
    if (json_object_get(jwk, kPrivate[i]) != NULL) {
      PKI_ERR(err, PKI_ERR_INVALID, "the JWK holds a private key member \"%s\"", kPrivate[i]);
      return NULL;
    }
  }
  const char *kty;
  size_t len;
  if (!required_string(&kty, &len, jwk, "kty", err)) return NULL;
  if (strcmp(kty, "EC") == 0) return ec_key(jwk, err);
  if (strcmp(kty, "RSA") == 0) return rsa_key(jwk, err);
  if (strcmp(kty, "OKP") == 0) return okp_key(jwk, err);
  PKI_ERR(err, PKI_ERR_UNSUPPORTED, "JWK key type \"%s\" is not EC, RSA or OKP", kty);
  return NULL;
}

EVP_PKEY *pki_jwk_parse(const char *json, size_t len, pki_err *err) {
  json_t *v = load_object(json, len, "the JWK", err);
  if (v == NULL) return NULL;
  EVP_PKEY *key = jwk_key(v, err);
  json_decref(v);
  return key;
}

/* --- the JWS ----------------------------------------------------------- */

static const struct {
  const char *name;
  pki_jws_alg alg;
} kAlgs[] = {
    {"ES256", PKI_JWS_ES256}, {"ES384", PKI_JWS_ES384}, {"RS256", PKI_JWS_RS256},
    {"EdDSA", PKI_JWS_EDDSA}, {"HS256", PKI_JWS_HS256},
};

/* parse_header reads the protected header's JSON into |out|. */
static int parse_header(pki_jws *out, const uint8_t *text, size_t len, pki_err *err) {
  json_t *h = load_object(text, len, "the protected header", err);
  if (h == NULL) return 0;
  int ok = 0;
  const char *alg, *nonce, *url, *kid;
  size_t alg_len, nonce_len, url_len, kid_len;
  json_t *jwk = json_object_get(h, "jwk");
  if (!required_string(&alg, &alg_len, h, "alg", err) ||
      !member_string(&nonce, &nonce_len, h, "nonce", err) ||
      !member_string(&url, &url_len, h, "url", err) ||
      !member_string(&kid, &kid_len, h, "kid", err)) {
    pki_err_prefix(err, "protected header: ");
    goto out;
  }
  for (size_t i = 0; i < sizeof(kAlgs) / sizeof(kAlgs[0]); i++) {
    if (strcmp(alg, kAlgs[i].name) == 0) out->alg = kAlgs[i].alg;
  }
  if (out->alg == 0) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "alg \"%s\" is not one pkid takes (ES256, ES384, RS256, EdDSA)", alg);
    goto out;
  }
  if (json_object_get(h, "crit") != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "the protected header names \"crit\" extensions, which pkid "
                                  "does not understand (RFC 7515 4.1.11)");
    goto out;
  }
  if ((jwk != NULL) == (kid != NULL)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "the protected header must hold exactly one of \"jwk\" and \"kid\" (RFC 8555 6.2)");
    goto out;
  }
  if (!copy_string(&out->nonce, nonce, nonce_len, "nonce", err) ||
      !copy_string(&out->url, url, url_len, "url", err) ||
      !copy_string(&out->kid, kid, kid_len, "kid", err)) {
    goto out;
  }
  if (jwk != NULL && (out->jwk = jwk_key(jwk, err)) == NULL) goto out;
  ok = 1;
out:
  json_decref(h);
  return ok;
}

int pki_jws_parse(pki_jws *out, const uint8_t *body, size_t len, pki_err *err) {
  memset(out, 0, sizeof(*out));
  if (len > PKI_JWS_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "the JWS is longer than %d octets", PKI_JWS_MAX);
    return 0;
  }
  json_t *v = load_object(body, len, "the JWS", err);
  if (v == NULL) return 0;
  int ok = 0;
  const char *key;
  json_t *value;
  json_object_foreach(v, key, value) {
    if (strcmp(key, "protected") != 0 && strcmp(key, "payload") != 0 &&
        strcmp(key, "signature") != 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "the JWS holds \"%s\": only \"protected\", \"payload\" and \"signature\" "
              "(RFC 8555 6.2: no unprotected header, one signature)",
              key);
      goto out;
    }
  }
  const char *protected, *payload, *signature;
  size_t protected_len, payload_len, signature_len;
  uint8_t *header = NULL;
  size_t header_len;
  if (!required_string(&protected, &protected_len, v, "protected", err) ||
      !required_string(&payload, &payload_len, v, "payload", err) ||
      !required_string(&signature, &signature_len, v, "signature", err)) {
    pki_err_prefix(err, "the JWS: ");
    goto out;
  }
  if (!unb64(&header, &header_len, protected, protected_len, "protected", err)) goto out;
  int parsed = parse_header(out, header, header_len, err);
  free(header);
  if (!parsed ||
      !unb64(&out->payload, &out->payload_len, payload, payload_len, "payload", err) ||
      !unb64(&out->signature, &out->signature_len, signature, signature_len, "signature",
             err)) {
    goto out;
  }
  /* RFC 7515 5.2: the signature covers the encoded texts as received. */
  out->signing_input_len = protected_len + 1 + payload_len;
  if ((out->signing_input = malloc(out->signing_input_len)) == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  memcpy(out->signing_input, protected, protected_len);
  out->signing_input[protected_len] = '.';
  memcpy(out->signing_input + protected_len + 1, payload, payload_len);
  ok = 1;
out:
  json_decref(v);
  if (!ok) pki_jws_cleanup(out);
  return ok;
}

/* key_fits reports whether |key| is of |alg|'s type. */
static int key_fits(pki_jws_alg alg, const EVP_PKEY *key) {
  int id = EVP_PKEY_id(key);
  if (alg == PKI_JWS_RS256) return id == EVP_PKEY_RSA;
  if (alg == PKI_JWS_EDDSA) return id == EVP_PKEY_ED25519;
  if (id != EVP_PKEY_EC) return 0;
  int nid = EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY((EVP_PKEY *)key)));
  return nid == (alg == PKI_JWS_ES256 ? NID_X9_62_prime256v1 : NID_secp384r1);
}

/* ecdsa_ok checks r||s (RFC 7518 3.4) over the digest of |jws|. */
static int ecdsa_ok(const pki_jws *jws, const EVP_PKEY *key) {
  size_t width = jws->alg == PKI_JWS_ES256 ? 32 : 48;
  if (jws->signature_len != 2 * width) return 0;
  uint8_t digest[SHA384_DIGEST_LENGTH];
  size_t digest_len = jws->alg == PKI_JWS_ES256 ? SHA256_DIGEST_LENGTH : SHA384_DIGEST_LENGTH;
  if (jws->alg == PKI_JWS_ES256) {
    SHA256(jws->signing_input, jws->signing_input_len, digest);
  } else {
    SHA384(jws->signing_input, jws->signing_input_len, digest);
  }
  ECDSA_SIG *sig = ECDSA_SIG_new();
  int ok = sig != NULL && BN_bin2bn(jws->signature, width, sig->r) != NULL &&
           BN_bin2bn(jws->signature + width, width, sig->s) != NULL &&
           ECDSA_do_verify(digest, digest_len, sig, EVP_PKEY_get0_EC_KEY((EVP_PKEY *)key));
  ECDSA_SIG_free(sig);
  return ok;
}

int pki_jws_verify(const pki_jws *jws, const EVP_PKEY *key, pki_err *err) {
  if (jws->alg == PKI_JWS_HS256) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "a MAC (HS256) does not sign a request, only an "
                                      "External Account Binding");
    return 0;
  }
  if (!key_fits(jws->alg, key)) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "the key is not of the type its alg needs");
    return 0;
  }
  int ok;
  if (jws->alg == PKI_JWS_ES256 || jws->alg == PKI_JWS_ES384) {
    ok = ecdsa_ok(jws, key);
  } else {
    EVP_MD_CTX ctx;
    EVP_MD_CTX_init(&ctx);
    ok = EVP_DigestVerifyInit(&ctx, NULL, jws->alg == PKI_JWS_RS256 ? EVP_sha256() : NULL, NULL,
                              (EVP_PKEY *)key) &&
         EVP_DigestVerify(&ctx, jws->signature, jws->signature_len, jws->signing_input,
                          jws->signing_input_len);
    EVP_MD_CTX_cleanup(&ctx);
  }
  ERR_clear_error();
  if (!ok) PKI_ERR(err, PKI_ERR_AUTH, "the JWS signature does not verify");
  return ok;
}

int pki_jws_verify_mac(const pki_jws *jws, const uint8_t *key, size_t key_len, pki_err *err) {
  if (jws->alg != PKI_JWS_HS256) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "an External Account Binding is MAC'd with HS256");
    return 0;
  }
  uint8_t mac[SHA256_DIGEST_LENGTH];
  unsigned mac_len = 0;
  if (HMAC(EVP_sha256(), key, key_len, jws->signing_input, jws->signing_input_len, mac,
           &mac_len) == NULL) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "HMAC failed");
    return 0;
  }
  if (jws->signature_len != mac_len || CRYPTO_memcmp(mac, jws->signature, mac_len) != 0) {
    PKI_ERR(err, PKI_ERR_AUTH, "the External Account Binding's MAC does not verify");
    return 0;
  }
  return 1;
}

/* --- RFC 7638 thumbprints ---------------------------------------------- */

/* add_b64 appends |"name":"<base64url of bytes>"| to |buf|. */
static int add_b64(char *buf, size_t size, size_t *used, const char *name, const uint8_t *bytes,
                   size_t len, pki_err *err) {
  char enc[PKI_BASE64_ENCODED_MAX(512) + 1];
  size_t enc_len;
  if (!pki_base64_encode(enc, sizeof(enc), &enc_len, bytes, len, B64URL, err)) return 0;
  int n = snprintf(buf + *used, size - *used, "\"%s\":\"%s\"", name, enc);
  if (n < 0 || (size_t)n >= size - *used) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "JWK thumbprint input too long");
    return 0;
  }
  *used += (size_t)n;
  return 1;
}

static int add_text(char *buf, size_t size, size_t *used, const char *text, pki_err *err) {
  size_t n = strlen(text);
  if (n >= size - *used) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "JWK thumbprint input too long");
    return 0;
  }
  memcpy(buf + *used, text, n + 1);
  *used += n;
  return 1;
}

int pki_jwk_json(char *buf, size_t size, size_t *out_len, const EVP_PKEY *key, pki_err *err) {
  /* RFC 7638 3.2: the required members only, in lexicographic order. */
  size_t used = 0;
  uint8_t a[512], b[512];
  int ok = 0;
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
      const EC_KEY *ec = EVP_PKEY_get0_EC_KEY((EVP_PKEY *)key);
      const EC_GROUP *group = EC_KEY_get0_group(ec);
      int p256 = EC_GROUP_get_curve_name(group) == NID_X9_62_prime256v1;
      size_t width = p256 ? 32 : 48;
      BIGNUM *x = BN_new(), *y = BN_new();
      ok = x != NULL && y != NULL &&
           EC_POINT_get_affine_coordinates_GFp(group, EC_KEY_get0_public_key(ec), x, y, NULL) &&
           BN_bn2bin_padded(a, width, x) && BN_bn2bin_padded(b, width, y) &&
           add_text(buf, size, &used, p256 ? "{\"crv\":\"P-256\"," : "{\"crv\":\"P-384\",",
                    err) &&
           add_text(buf, size, &used, "\"kty\":\"EC\",", err) &&
           add_b64(buf, size, &used, "x", a, width, err) &&
           add_text(buf, size, &used, ",", err) &&
           add_b64(buf, size, &used, "y", b, width, err) &&
           add_text(buf, size, &used, "}", err);
      BN_free(x);
      BN_free(y);
      break;
    }
    case EVP_PKEY_RSA: {
      const RSA *rsa = EVP_PKEY_get0_RSA((EVP_PKEY *)key);
      size_t n_len = BN_num_bytes(RSA_get0_n(rsa)), e_len = BN_num_bytes(RSA_get0_e(rsa));
      ok = n_len <= sizeof(a) && e_len <= sizeof(b) &&
           BN_bn2bin(RSA_get0_e(rsa), b) == e_len && BN_bn2bin(RSA_get0_n(rsa), a) == n_len &&
           add_text(buf, size, &used, "{", err) &&
           add_b64(buf, size, &used, "e", b, e_len, err) &&
           add_text(buf, size, &used, ",\"kty\":\"RSA\",", err) &&
           add_b64(buf, size, &used, "n", a, n_len, err) &&
           add_text(buf, size, &used, "}", err);
      break;
    }
    case EVP_PKEY_ED25519: {
      size_t len = 32;
      ok = EVP_PKEY_get_raw_public_key(key, a, &len) && len == 32 &&
           add_text(buf, size, &used, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",", err) &&
           add_b64(buf, size, &used, "x", a, 32, err) &&
           add_text(buf, size, &used, "}", err);
      break;
    }
    default:
      PKI_ERR(err, PKI_ERR_UNSUPPORTED, "no JWK form for this key type");
      return 0;
  }
  if (!ok) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "the key cannot be written as a JWK");
    return 0;
  }
  *out_len = used;
  return 1;
}

int pki_jwk_thumbprint(uint8_t out[32], const EVP_PKEY *key, pki_err *err) {
  char buf[PKI_JWK_JSON_MAX];
  size_t len;
  if (!pki_jwk_json(buf, sizeof(buf), &len, key, err)) return 0;
  SHA256((const uint8_t *)buf, len, out);
  return 1;
}

void pki_jws_cleanup(pki_jws *jws) {
  if (jws == NULL) return;
  free(jws->nonce);
  free(jws->url);
  free(jws->kid);
  EVP_PKEY_free(jws->jwk);
  free(jws->payload);
  free(jws->signing_input);
  free(jws->signature);
  memset(jws, 0, sizeof(*jws));
}
