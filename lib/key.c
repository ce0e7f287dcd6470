#include "lib/key.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/aead.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/obj.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "lib/file.h"
#include "lib/pem.h"

/* Largest key file we read: a PEM private key is a few KB, and a file that
 * also holds certificates stays well under this. */
#define KEY_FILE_MAX (1024 * 1024)

/* Sealed key format (the DER inside "PKID SEALED PRIVATE KEY"):
 *
 *   SealedKey ::= SEQUENCE {
 *     version     INTEGER (1),
 *     kdf         SEQUENCE {        -- scrypt, RFC 7914
 *       log2N     INTEGER (10..20),
 *       r         INTEGER (1..16),
 *       p         INTEGER (1..4),
 *       salt      OCTET STRING (SIZE (16)) },
 *     aead        INTEGER (1),      -- 1 = AES-256-GCM, 16-byte tag
 *     nonce       OCTET STRING (SIZE (12)),
 *     ciphertext  OCTET STRING }    -- AEAD(PKCS#8 PrivateKeyInfo DER) || tag
 *
 * The AEAD key is scrypt(secret, salt, N = 2^log2N, r, p), 32 bytes. The
 * additional data is the DER of the version, kdf, aead and nonce elements
 * exactly as they appear in the file, concatenated: the contents of the
 * outer SEQUENCE up to, not including, the ciphertext's tag byte. Changing
 * any parameter therefore fails authentication instead of quietly deriving
 * another key. */
#define SEALED_PEM_NAME "PKID SEALED PRIVATE KEY"
#define SEALED_VERSION 1
#define SEALED_AEAD_AES_256_GCM 1
#define SEALED_SALT_LEN 16
#define SEALED_NONCE_LEN 12
#define SEALED_KEY_LEN 32
#define SEALED_MAX (64 * 1024)
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MIN_LOG2N 10
#define SCRYPT_MAX_R 16
#define SCRYPT_MAX_P 4
/* A fuzzer would spend all its time in scrypt; in fuzzing builds the cost
 * ceiling drops so that it exercises the parser instead. */
#if defined(PKID_FUZZING)
#define SCRYPT_MAX_LOG2N 10
#else
#define SCRYPT_MAX_LOG2N 20
#endif
/* scrypt needs 128 * r * (N + p + 1) bytes. The bounds on log2N, r and p
 * alone would allow 2 GiB; this caps it at the default r = 8 with the
 * largest N, about 1 GiB, so a hostile file cannot ask for more. */
#define SCRYPT_MAX_MEM (((size_t)1 << 30) + ((size_t)1 << 20))

int pki_key_type_parse(pki_key_type *out_type, unsigned *out_bits,
                       const char *text, pki_err *err) {
  static const struct {
    const char *name;
    pki_key_type type;
    unsigned bits;
  } kTypes[] = {
      {"ecdsa-p256", PKI_KEY_ECDSA_P256, 256},
      {"ecdsa-p384", PKI_KEY_ECDSA_P384, 384},
      {"ed25519", PKI_KEY_ED25519, 256},
      {"rsa-2048", PKI_KEY_RSA, 2048},
      {"rsa-3072", PKI_KEY_RSA, 3072},
      {"rsa-4096", PKI_KEY_RSA, 4096},
  };
  for (size_t i = 0; i < sizeof(kTypes) / sizeof(kTypes[0]); i++) {
    if (strcmp(text, kTypes[i].name) == 0) {
      *out_type = kTypes[i].type;
      *out_bits = kTypes[i].bits;
      return 1;
    }
  }
  PKI_ERR(err, PKI_ERR_UNSUPPORTED,
          "key type \"%.64s\" is not supported (use ecdsa-p256, ecdsa-p384, "
          "ed25519, rsa-2048, rsa-3072 or rsa-4096)",
          text);
  return 0;
}

const char *pki_key_type_name(pki_key_type type, unsigned bits) {
  switch (type) {
    case PKI_KEY_ECDSA_P256: return "ecdsa-p256";
    case PKI_KEY_ECDSA_P384: return "ecdsa-p384";
    case PKI_KEY_ED25519: return "ed25519";
    case PKI_KEY_RSA:
      switch (bits) {
        case 2048: return "rsa-2048";
        case 3072: return "rsa-3072";
        case 4096: return "rsa-4096";
      }
      return "rsa"; /* a size pkid accepts in CSRs but does not generate */
    case PKI_KEY_NONE: break;
  }
  return "none";
}

int pki_key_type_can_sign_certs(pki_key_type type) {
  return type == PKI_KEY_ECDSA_P256 || type == PKI_KEY_ECDSA_P384 ||
         type == PKI_KEY_ED25519;
}

static EVP_PKEY *generate_ec(int nid) {
  EVP_PKEY *pkey = EVP_PKEY_new();
  EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
  if (pkey == NULL || ec == NULL || !EC_KEY_generate_key(ec) ||
      !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
    EC_KEY_free(ec);
    EVP_PKEY_free(pkey);
    return NULL;
  }
  return pkey;
}

static EVP_PKEY *generate_ed25519(void) {
  EVP_PKEY *pkey = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
  if (ctx == NULL || !EVP_PKEY_keygen_init(ctx) ||
      !EVP_PKEY_keygen(ctx, &pkey)) {
    EVP_PKEY_free(pkey);
    pkey = NULL;
  }
  EVP_PKEY_CTX_free(ctx);
  return pkey;
}

static EVP_PKEY *generate_rsa(unsigned bits) {
  EVP_PKEY *pkey = EVP_PKEY_new();
  RSA *rsa = RSA_new();
  BIGNUM *e = BN_new();
  if (pkey == NULL || rsa == NULL || e == NULL || !BN_set_word(e, RSA_F4) ||
      !RSA_generate_key_ex(rsa, (int)bits, e, NULL) ||
      !EVP_PKEY_assign_RSA(pkey, rsa)) {
    BN_free(e);
    RSA_free(rsa);
    EVP_PKEY_free(pkey);
    return NULL;
  }
  BN_free(e);
  return pkey;
}

EVP_PKEY *pki_key_generate(pki_key_type type, unsigned bits, pki_err *err) {
  EVP_PKEY *pkey = NULL;
  switch (type) {
    case PKI_KEY_ECDSA_P256: pkey = generate_ec(NID_X9_62_prime256v1); break;
    case PKI_KEY_ECDSA_P384: pkey = generate_ec(NID_secp384r1); break;
    case PKI_KEY_ED25519: pkey = generate_ed25519(); break;
    case PKI_KEY_RSA:
      if (bits != 2048 && bits != 3072 && bits != 4096) {
        PKI_ERR(err, PKI_ERR_UNSUPPORTED,
                "cannot generate an RSA key of %u bits (2048, 3072 or 4096)",
                bits);
        return NULL;
      }
      pkey = generate_rsa(bits);
      break;
    case PKI_KEY_NONE:
      PKI_ERR(err, PKI_ERR_INVALID, "no key type given");
      return NULL;
  }
  if (pkey == NULL) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "generating a %s key failed",
            pki_key_type_name(type, bits));
  }
  return pkey;
}

int pki_key_describe(pki_key_type *out_type, unsigned *out_bits,
                     const EVP_PKEY *key, pki_err *err) {
  *out_type = PKI_KEY_NONE;
  *out_bits = 0;
  int id = EVP_PKEY_id(key);
  if (id == EVP_PKEY_EC) {
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
    const EC_GROUP *group = ec != NULL ? EC_KEY_get0_group(ec) : NULL;
    int nid = group != NULL ? EC_GROUP_get_curve_name(group) : NID_undef;
    if (nid == NID_X9_62_prime256v1) {
      *out_type = PKI_KEY_ECDSA_P256;
      *out_bits = 256;
      return 1;
    }
    if (nid == NID_secp384r1) {
      *out_type = PKI_KEY_ECDSA_P384;
      *out_bits = 384;
      return 1;
    }
    const char *curve = EC_curve_nid2nist(nid);
    if (curve == NULL) curve = OBJ_nid2sn(nid);
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "ECDSA key on curve %s is not supported (use P-256 or P-384)",
            curve != NULL ? curve : "(unknown)");
    return 0;
  }
  if (id == EVP_PKEY_ED25519) {
    *out_type = PKI_KEY_ED25519;
    *out_bits = 256;
    return 1;
  }
  if (id == EVP_PKEY_RSA) {
    const RSA *rsa = EVP_PKEY_get0_RSA(key);
    unsigned bits = rsa != NULL && RSA_get0_n(rsa) != NULL ? RSA_bits(rsa) : 0;
    if (bits < 2048 || bits > 4096) {
      PKI_ERR(err, PKI_ERR_UNSUPPORTED,
              "RSA key of %u bits is not supported (2048 to 4096 bits)", bits);
      return 0;
    }
    *out_type = PKI_KEY_RSA;
    *out_bits = bits;
    return 1;
  }
  const char *name = OBJ_nid2sn(id);
  PKI_ERR(err, PKI_ERR_UNSUPPORTED,
          "%s key is not supported (use ECDSA P-256 or P-384, Ed25519, or RSA "
          "of 2048 to 4096 bits)",
          name != NULL ? name : "this kind of");
  return 0;
}

int pki_key_write_pem(const char *path, const EVP_PKEY *key, pki_err *err) {
  CBB cbb;
  uint8_t *der = NULL;
  size_t der_len = 0;
  if (!CBB_init(&cbb, 256) || !EVP_marshal_private_key(&cbb, key) ||
      !CBB_finish(&cbb, &der, &der_len)) {
    CBB_cleanup(&cbb);
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot encode the private key for %s",
            path);
    return 0;
  }
  char *pem = NULL;
  size_t pem_len = 0;
  int ok = pki_pem_append(&pem, &pem_len, "PRIVATE KEY", der, der_len, err) &&
           pki_file_write_atomic(path, pem, pem_len, 0600, err);
  OPENSSL_cleanse(der, der_len);
  OPENSSL_free(der);
  if (pem != NULL) {
    OPENSSL_cleanse(pem, pem_len);
    free(pem);
  }
  return ok;
}

/* parse_private_key parses one DER private key of the kind |pem_name| names,
 * with nothing after it. */
static EVP_PKEY *parse_private_key(const char *pem_name, const uint8_t *der,
                                   size_t der_len) {
  CBS cbs;
  CBS_init(&cbs, der, der_len);
  EVP_PKEY *pkey = NULL;
  if (strcmp(pem_name, "PRIVATE KEY") == 0) {
    pkey = EVP_parse_private_key(&cbs);
  } else if (strcmp(pem_name, "EC PRIVATE KEY") == 0) {
    EC_KEY *ec = EC_KEY_parse_private_key(&cbs, NULL);
    if (ec != NULL) {
      pkey = EVP_PKEY_new();
      if (pkey == NULL || !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
        EVP_PKEY_free(pkey);
        EC_KEY_free(ec);
        pkey = NULL;
      }
    }
  } else if (strcmp(pem_name, "RSA PRIVATE KEY") == 0) {
    RSA *rsa = RSA_parse_private_key(&cbs);
    if (rsa != NULL) {
      pkey = EVP_PKEY_new();
      if (pkey == NULL || !EVP_PKEY_assign_RSA(pkey, rsa)) {
        EVP_PKEY_free(pkey);
        RSA_free(rsa);
        pkey = NULL;
      }
    }
  }
  if (pkey != NULL && CBS_len(&cbs) != 0) {
    EVP_PKEY_free(pkey);
    pkey = NULL;
  }
  ERR_clear_error();
  return pkey;
}

/* The labels pki_key_read_pem stops at: the plain private keys it reads
 * (kKeyLabels[0..NUM_PLAIN_LABELS)), then encrypted ones it refuses. */
static const char *const kKeyLabels[] = {
    "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", SEALED_PEM_NAME,
};
#define NUM_PLAIN_LABELS 3
#define NUM_KEY_LABELS (sizeof(kKeyLabels) / sizeof(kKeyLabels[0]))

EVP_PKEY *pki_key_read_pem(const char *path, pki_err *err) {
  uint8_t *text = NULL, *der = NULL;
  size_t text_len = 0, der_len = 0;
  if (!pki_file_read(&text, &text_len, path, KEY_FILE_MAX, err)) return NULL;

  /* Blocks with other labels are passed over: "openssl ecparam -genkey"
   * writes "EC PARAMETERS" first, and a bundle may hold certificates. */
  EVP_PKEY *pkey = NULL;
  const char *label = NULL;
  if (!pki_pem_decode(&der, &der_len, &label, kKeyLabels, NUM_KEY_LABELS, text, text_len, 0,
                      err)) {
    if (err->code == PKI_ERR_NOT_FOUND) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: no PEM private key found", path);
    } else if (err->code == PKI_ERR_UNSUPPORTED) {
      PKI_ERR(err, PKI_ERR_UNSUPPORTED,
              "%s: the key is encrypted with legacy PEM encryption; decrypt it first "
              "(openssl pkey -in %s)",
              path, path);
    } else {
      pki_err_prefix(err, "%s: ", path);
    }
    goto done;
  }
  int plain = 0;
  for (size_t i = 0; i < NUM_PLAIN_LABELS; i++) plain |= label == kKeyLabels[i];
  if (!plain) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "%s: the key is encrypted (%s), expected a plain private key", path, label);
    goto done;
  }
  pkey = parse_private_key(label, der, der_len);
  if (pkey == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: the %s block is not a valid key", path, label);
  }

done:
  if (der != NULL) OPENSSL_cleanse(der, der_len);
  free(der);
  OPENSSL_cleanse(text, text_len);
  free(text);
  return pkey;
}

/* scrypt_params_ok bounds what a sealed key may ask of scrypt. */
static int scrypt_params_ok(uint64_t log2n, uint64_t r, uint64_t p) {
  if (log2n < SCRYPT_MIN_LOG2N || log2n > SCRYPT_MAX_LOG2N || r < 1 ||
      r > SCRYPT_MAX_R || p < 1 || p > SCRYPT_MAX_P) {
    return 0;
  }
  uint64_t need = 128 * r * (((uint64_t)1 << log2n) + p + 1);
  return need <= SCRYPT_MAX_MEM;
}

static int derive_key(uint8_t out[SEALED_KEY_LEN], const uint8_t *secret,
                      size_t secret_len, const uint8_t *salt, uint64_t log2n,
                      uint64_t r, uint64_t p, pki_err *err) {
  errno = 0; /* for PKI_ERR_CRYPTO */
  if (!EVP_PBE_scrypt((const char *)secret, secret_len, salt, SEALED_SALT_LEN,
                      (uint64_t)1 << log2n, r, p, SCRYPT_MAX_MEM, out,
                      SEALED_KEY_LEN)) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INTERNAL, "scrypt failed");
    return 0;
  }
  return 1;
}

int pki_key_seal(char **out, size_t *out_len, const EVP_PKEY *key,
                 const uint8_t *secret, size_t secret_len, unsigned log2n,
                 pki_err *err) {
  *out = NULL;
  *out_len = 0;
  if (secret_len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot seal a key under an empty secret");
    return 0;
  }
  if (!scrypt_params_ok(log2n, SCRYPT_R, SCRYPT_P)) {
    PKI_ERR(err, PKI_ERR_INVALID, "scrypt cost %u is out of range (%d to %d)",
            log2n, SCRYPT_MIN_LOG2N, SCRYPT_MAX_LOG2N);
    return 0;
  }

  int ok = 0;
  uint8_t *pt = NULL, *ad = NULL, *ct = NULL, *der = NULL;
  size_t pt_len = 0, ad_len = 0, ct_len = 0, der_len = 0;
  uint8_t salt[SEALED_SALT_LEN], nonce[SEALED_NONCE_LEN];
  uint8_t aead_key[SEALED_KEY_LEN];
  const EVP_AEAD *aead = EVP_aead_aes_256_gcm();
  EVP_AEAD_CTX ctx;
  EVP_AEAD_CTX_zero(&ctx);
  CBB cbb, kdf, seq;
  CBB_zero(&cbb);

  if (!CBB_init(&cbb, 256) || !EVP_marshal_private_key(&cbb, key) ||
      !CBB_finish(&cbb, &pt, &pt_len)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot encode the private key");
    goto done;
  }
  RAND_bytes(salt, sizeof(salt));
  RAND_bytes(nonce, sizeof(nonce));
  if (!derive_key(aead_key, secret, secret_len, salt, log2n, SCRYPT_R,
                  SCRYPT_P, err)) {
    goto done;
  }

  /* The additional data: every element before the ciphertext. */
  if (!CBB_init(&cbb, 64) || !CBB_add_asn1_uint64(&cbb, SEALED_VERSION) ||
      !CBB_add_asn1(&cbb, &kdf, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1_uint64(&kdf, log2n) ||
      !CBB_add_asn1_uint64(&kdf, SCRYPT_R) ||
      !CBB_add_asn1_uint64(&kdf, SCRYPT_P) ||
      !CBB_add_asn1_octet_string(&kdf, salt, sizeof(salt)) ||
      !CBB_add_asn1_uint64(&cbb, SEALED_AEAD_AES_256_GCM) ||
      !CBB_add_asn1_octet_string(&cbb, nonce, sizeof(nonce)) ||
      !CBB_finish(&cbb, &ad, &ad_len)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot encode the sealed key");
    goto done;
  }

  ct = malloc(pt_len + EVP_AEAD_max_overhead(aead));
  if (ct == NULL) {
    PKI_ERR_OOM(err);
    goto done;
  }
  if (!EVP_AEAD_CTX_init(&ctx, aead, aead_key, sizeof(aead_key),
                         EVP_AEAD_DEFAULT_TAG_LENGTH, NULL) ||
      !EVP_AEAD_CTX_seal(&ctx, ct, &ct_len,
                         pt_len + EVP_AEAD_max_overhead(aead), nonce,
                         sizeof(nonce), pt, pt_len, ad, ad_len)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "encrypting the key failed");
    goto done;
  }

  if (!CBB_init(&cbb, ad_len + ct_len + 16) ||
      !CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_bytes(&seq, ad, ad_len) ||
      !CBB_add_asn1_octet_string(&seq, ct, ct_len) ||
      !CBB_finish(&cbb, &der, &der_len)) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot encode the sealed key");
    goto done;
  }
  ok = pki_pem_append(out, out_len, SEALED_PEM_NAME, der, der_len, err);

done:
  if (!ok) ERR_clear_error();
  CBB_cleanup(&cbb);
  EVP_AEAD_CTX_cleanup(&ctx);
  OPENSSL_cleanse(aead_key, sizeof(aead_key));
  if (pt != NULL) OPENSSL_cleanse(pt, pt_len);
  OPENSSL_free(pt);
  OPENSSL_free(ad);
  free(ct);
  OPENSSL_free(der);
  return ok;
}

/* sealed_parts is a parsed SealedKey; the pointers are into the DER. */
typedef struct sealed_parts {
  uint64_t log2n, r, p;
  const uint8_t *salt, *nonce, *ad, *ct;
  size_t ad_len, ct_len;
} sealed_parts;

/* parse_sealed parses the SealedKey DER strictly: the fields in order, each
 * minimally encoded, in range, with nothing after them. */
static int parse_sealed(sealed_parts *out, const uint8_t *der, size_t der_len,
                        pki_err *err) {
  CBS cbs, seq, kdf, salt, nonce, ct;
  uint64_t version, aead;
  CBS_init(&cbs, der, der_len);
  if (!CBS_get_asn1(&cbs, &seq, CBS_ASN1_SEQUENCE) || CBS_len(&cbs) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "sealed key: not a DER SEQUENCE");
    return 0;
  }
  const uint8_t *start = CBS_data(&seq);
  if (!CBS_get_asn1_uint64(&seq, &version) || version != SEALED_VERSION) {
    PKI_ERR(err, PKI_ERR_INVALID, "sealed key: unknown version");
    return 0;
  }
  if (!CBS_get_asn1(&seq, &kdf, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_uint64(&kdf, &out->log2n) ||
      !CBS_get_asn1_uint64(&kdf, &out->r) ||
      !CBS_get_asn1_uint64(&kdf, &out->p) ||
      !CBS_get_asn1(&kdf, &salt, CBS_ASN1_OCTETSTRING) ||
      CBS_len(&salt) != SEALED_SALT_LEN || CBS_len(&kdf) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "sealed key: malformed scrypt parameters");
    return 0;
  }
  if (!scrypt_params_ok(out->log2n, out->r, out->p)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "sealed key: scrypt parameters out of range (log2N %d to %d, r 1 "
            "to %d, p 1 to %d, at most %zu MiB)",
            SCRYPT_MIN_LOG2N, SCRYPT_MAX_LOG2N, SCRYPT_MAX_R, SCRYPT_MAX_P,
            SCRYPT_MAX_MEM >> 20);
    return 0;
  }
  if (!CBS_get_asn1_uint64(&seq, &aead) || aead != SEALED_AEAD_AES_256_GCM) {
    PKI_ERR(err, PKI_ERR_INVALID, "sealed key: unknown cipher");
    return 0;
  }
  if (!CBS_get_asn1(&seq, &nonce, CBS_ASN1_OCTETSTRING) ||
      CBS_len(&nonce) != SEALED_NONCE_LEN) {
    PKI_ERR(err, PKI_ERR_INVALID, "sealed key: malformed nonce");
    return 0;
  }
  out->ad = start;
  out->ad_len = (size_t)(CBS_data(&seq) - start);
  if (!CBS_get_asn1(&seq, &ct, CBS_ASN1_OCTETSTRING) ||
      CBS_len(&ct) < EVP_AEAD_max_overhead(EVP_aead_aes_256_gcm()) ||
      CBS_len(&seq) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "sealed key: malformed ciphertext");
    return 0;
  }
  out->salt = CBS_data(&salt);
  out->nonce = CBS_data(&nonce);
  out->ct = CBS_data(&ct);
  out->ct_len = CBS_len(&ct);
  return 1;
}

EVP_PKEY *pki_key_open(const char *pem, size_t pem_len, const uint8_t *secret,
                       size_t secret_len, pki_err *err) {
  if (pem_len > SEALED_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "sealed key: too large (%zu bytes)",
            pem_len);
    return NULL;
  }
  if (secret_len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot open a sealed key with an empty "
            "secret");
    return NULL;
  }

  EVP_PKEY *pkey = NULL;
  uint8_t *der = NULL, *pt = NULL;
  size_t der_len = 0, pt_len = 0;
  sealed_parts parts;
  memset(&parts, 0, sizeof(parts));
  uint8_t aead_key[SEALED_KEY_LEN];
  EVP_AEAD_CTX ctx;
  EVP_AEAD_CTX_zero(&ctx);
  CBS cbs;

  static const char *const kSealedLabel[] = {SEALED_PEM_NAME};
  pki_err pem_err;
  if (!pki_pem_decode(&der, &der_len, NULL, kSealedLabel, 1, (const uint8_t *)pem, pem_len, 0,
                      &pem_err)) {
    /* Whatever is wrong with the PEM, this is not a sealed key; unless
     * there was no memory to decode it. */
    if (pem_err.code == PKI_ERR_EXHAUSTED) {
      *err = pem_err;
    } else {
      PKI_ERR(err, PKI_ERR_INVALID, "not a sealed private key (%s)", pem_err.msg);
    }
    goto done;
  }

  if (!parse_sealed(&parts, der, der_len, err) ||
      !derive_key(aead_key, secret, secret_len, parts.salt, parts.log2n,
                  parts.r, parts.p, err)) {
    goto done;
  }
  pt = malloc(parts.ct_len);
  if (pt == NULL) {
    PKI_ERR_OOM(err);
    goto done;
  }
  errno = 0; /* for PKI_ERR_CRYPTO */
  if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_256_gcm(), aead_key,
                         sizeof(aead_key), EVP_AEAD_DEFAULT_TAG_LENGTH, NULL)) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INTERNAL, "cannot set up AES-256-GCM");
    goto done;
  }
  if (!EVP_AEAD_CTX_open(&ctx, pt, &pt_len, parts.ct_len, parts.nonce,
                         SEALED_NONCE_LEN, parts.ct, parts.ct_len, parts.ad,
                         parts.ad_len)) {
    PKI_ERR(err, PKI_ERR_AUTH,
            "wrong passphrase or shares (the key did not decrypt)");
    goto done;
  }
  CBS_init(&cbs, pt, pt_len);
  errno = 0; /* for PKI_ERR_CRYPTO */
  pkey = EVP_parse_private_key(&cbs);
  if (pkey != NULL && CBS_len(&cbs) != 0) {
    EVP_PKEY_free(pkey);
    pkey = NULL;
  }
  if (pkey == NULL) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INVALID,
                   "sealed key: decrypted, but does not hold a valid private key");
  }

done:
  ERR_clear_error();
  EVP_AEAD_CTX_cleanup(&ctx);
  OPENSSL_cleanse(aead_key, sizeof(aead_key));
  if (pt != NULL) {
    OPENSSL_cleanse(pt, parts.ct_len);
    free(pt);
  }
  free(der);
  return pkey;
}

int pki_key_write_sealed(const char *path, const EVP_PKEY *key,
                         const uint8_t *secret, size_t secret_len,
                         pki_err *err) {
  char *pem = NULL;
  size_t pem_len = 0;
  if (!pki_key_seal(&pem, &pem_len, key, secret, secret_len,
                    PKI_SCRYPT_LOG2N_DEFAULT, err)) {
    return 0;
  }
  int ok = pki_file_write_atomic(path, pem, pem_len, 0600, err);
  free(pem);
  return ok;
}

EVP_PKEY *pki_key_read_sealed(const char *path, const uint8_t *secret,
                              size_t secret_len, pki_err *err) {
  uint8_t *text = NULL;
  size_t text_len = 0;
  if (!pki_file_read(&text, &text_len, path, SEALED_MAX, err)) return NULL;
  EVP_PKEY *pkey =
      pki_key_open((const char *)text, text_len, secret, secret_len, err);
  if (pkey == NULL) pki_err_prefix(err, "%s: ", path);
  free(text);
  return pkey;
}

int pki_spki_sha256(uint8_t out[32], const EVP_PKEY *key, pki_err *err) {
  CBB cbb;
  uint8_t *der = NULL;
  size_t der_len = 0;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, key) ||
      !CBB_finish(&cbb, &der, &der_len)) {
    CBB_cleanup(&cbb);
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot encode the public key");
    return 0;
  }
  SHA256(der, der_len, out);
  OPENSSL_free(der);
  return 1;
}
