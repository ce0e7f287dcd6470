/* checkpoint.c: signed journal heads (see checkpoint.h). */
#include "lib/checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/base64.h"

static const char kHeader[] = "pkid journal checkpoint\n";
/* U+2014 EM DASH, then the key's name, as in a signed note. */
static const char kSigPrefix[] = "\xe2\x80\x94 pkid-audit ";

int pki_checkpoint_key_id(uint8_t out[4], EVP_PKEY *key, pki_err *err) {
  CBB cbb;
  uint8_t *spki = NULL;
  size_t len = 0;
  if (!CBB_init(&cbb, 64) || !EVP_marshal_public_key(&cbb, key) ||
      !CBB_finish(&cbb, &spki, &len)) {
    CBB_cleanup(&cbb);
    PKI_ERR(err, PKI_ERR_INVALID, "the audit key's public half cannot be encoded");
    return 0;
  }
  uint8_t hash[SHA256_DIGEST_LENGTH];
  SHA256(spki, len, hash);
  OPENSSL_free(spki);
  memcpy(out, hash, 4);
  return 1;
}

/* format_body writes the body of |cp| into |out|; its length, or 0. */
static size_t format_body(char *out, size_t size, const pki_checkpoint *cp) {
  char hex[2 * PKI_JOURNAL_HASH_LEN + 1];
  for (size_t i = 0; i < PKI_JOURNAL_HASH_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", cp->chain[i]);
  int n = snprintf(out, size, "%sorigin %s\nseq %" PRIu64 "\nchain %s\ntime %" PRIu64 "\n",
                   kHeader, cp->origin, cp->seq, hex, cp->time_ms);
  return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static int origin_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= PKI_CHECKPOINT_ORIGIN_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < 0x20 || s[i] > 0x7e) return 0;
  }
  return 1;
}

int pki_checkpoint_sign(char **out, size_t *out_len, pki_checkpoint *cp, EVP_PKEY *key,
                        pki_err *err) {
  *out = NULL;
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
    PKI_ERR(err, PKI_ERR_INVALID, "the audit key must be Ed25519");
    return 0;
  }
  if (!origin_ok(cp->origin) || cp->seq == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "a checkpoint needs an origin and a record");
    return 0;
  }
  cp->body_len = format_body((char *)cp->body, sizeof(cp->body), cp);
  if (cp->body_len == 0 || !pki_checkpoint_key_id(cp->key_id, key, err)) {
    if (cp->body_len == 0) PKI_ERR(err, PKI_ERR_INVALID, "the checkpoint is too long");
    return 0;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  size_t sig_len = sizeof(cp->sig);
  int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) &&
           EVP_DigestSign(ctx, cp->sig, &sig_len, cp->body, cp->body_len) &&
           sig_len == sizeof(cp->sig);
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "signing the checkpoint failed");
    return 0;
  }
  uint8_t raw[4 + 64];
  memcpy(raw, cp->key_id, 4);
  memcpy(raw + 4, cp->sig, 64);
  char b64[PKI_BASE64_ENCODED_MAX(sizeof(raw)) + 1];
  size_t b64_len;
  if (!pki_base64_encode(b64, sizeof(b64), &b64_len, raw, sizeof(raw),
                         PKI_BASE64_STD | PKI_BASE64_PAD_REQUIRED, err)) {
    return 0;
  }
  size_t total = cp->body_len + 1 + strlen(kSigPrefix) + b64_len + 1;
  *out = malloc(total + 1);
  if (*out == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(*out, cp->body, cp->body_len);
  snprintf(*out + cp->body_len, total + 1 - cp->body_len, "\n%s%s\n", kSigPrefix, b64);
  *out_len = total;
  return 1;
}

/* take_line takes the next line of |cbs| (without its newline) into
 * |line|; 0 when there is no complete line. */
static int take_line(CBS *cbs, CBS *line) {
  const uint8_t *nl = memchr(CBS_data(cbs), '\n', CBS_len(cbs));
  if (nl == NULL) return 0;
  size_t n = (size_t)(nl - CBS_data(cbs));
  return CBS_get_bytes(cbs, line, n) && CBS_skip(cbs, 1);
}

/* field takes "NAME VALUE" from |line| into |value| (NUL-terminated). */
static int field(const CBS *line, const char *name, char *value, size_t size) {
  size_t n = strlen(name);
  if (CBS_len(line) <= n + 1 || memcmp(CBS_data(line), name, n) != 0 ||
      CBS_data(line)[n] != ' ' || CBS_len(line) - n - 1 >= size) {
    return 0;
  }
  memcpy(value, CBS_data(line) + n + 1, CBS_len(line) - n - 1);
  value[CBS_len(line) - n - 1] = '\0';
  return 1;
}

/* decimal reads a canonical decimal (no sign, no leading zero) into |out|. */
static int decimal(const char *s, uint64_t *out) {
  size_t n = strlen(s);
  if (n == 0 || n > 20 || (n > 1 && s[0] == '0')) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  *out = v;
  return 1;
}

static int hex32(const char *s, uint8_t out[PKI_JOURNAL_HASH_LEN]) {
  if (strlen(s) != 2 * PKI_JOURNAL_HASH_LEN) return 0;
  for (size_t i = 0; i < PKI_JOURNAL_HASH_LEN; i++) {
    unsigned v = 0;
    for (int k = 0; k < 2; k++) {
      char c = s[2 * i + (size_t)k];
      unsigned d;
      if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
      else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
      else return 0; /* lowercase only: one text per checkpoint */
      v = v << 4 | d;
    }
    out[i] = (uint8_t)v;
  }
  return 1;
}

int pki_checkpoint_parse(pki_checkpoint *out, const uint8_t *text, size_t len, pki_err *err) {
  memset(out, 0, sizeof(*out));
  if (len > PKI_CHECKPOINT_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "a checkpoint is at most %d octets", PKI_CHECKPOINT_MAX);
    return 0;
  }
  CBS cbs, line;
  CBS_init(&cbs, text, len);
  char value[PKI_CHECKPOINT_ORIGIN_MAX + 8];
  const char *problem = NULL;
  if (!take_line(&cbs, &line) || !CBS_mem_equal(&line, (const uint8_t *)kHeader,
                                                strlen(kHeader) - 1)) {
    problem = "line 1 is not \"pkid journal checkpoint\"";
  } else if (!take_line(&cbs, &line) || !field(&line, "origin", value, sizeof(value)) ||
             !origin_ok(value)) {
    problem = "line 2 is not \"origin NAME\"";
  } else {
    snprintf(out->origin, sizeof(out->origin), "%s", value);
    if (!take_line(&cbs, &line) || !field(&line, "seq", value, sizeof(value)) ||
        !decimal(value, &out->seq) || out->seq == 0) {
      problem = "line 3 is not \"seq N\" (N >= 1)";
    } else if (!take_line(&cbs, &line) || !field(&line, "chain", value, sizeof(value)) ||
               !hex32(value, out->chain)) {
      problem = "line 4 is not \"chain\" and 64 lowercase hex digits";
    } else if (!take_line(&cbs, &line) || !field(&line, "time", value, sizeof(value)) ||
               !decimal(value, &out->time_ms)) {
      problem = "line 5 is not \"time MS\"";
    }
  }
  if (problem == NULL) {
    out->body_len = len - CBS_len(&cbs);
    memcpy(out->body, text, out->body_len);
    /* The body must be exactly what pki_checkpoint_sign writes. */
    char again[PKI_CHECKPOINT_MAX];
    size_t n = format_body(again, sizeof(again), out);
    if (n != out->body_len || memcmp(again, out->body, n) != 0) {
      problem = "the body is not in its one canonical form";
    } else if (!take_line(&cbs, &line) || CBS_len(&line) != 0) {
      problem = "no blank line after the body";
    } else if (!take_line(&cbs, &line) || CBS_len(&cbs) != 0 ||
               CBS_len(&line) <= strlen(kSigPrefix) ||
               memcmp(CBS_data(&line), kSigPrefix, strlen(kSigPrefix)) != 0) {
      problem = "the last line is not \"\xe2\x80\x94 pkid-audit SIGNATURE\"";
    } else {
      uint8_t raw[4 + 64 + 3];
      size_t raw_len = 0;
      pki_err b64err;
      if (!pki_base64_decode(raw, sizeof(raw), &raw_len,
                             (const char *)CBS_data(&line) + strlen(kSigPrefix),
                             CBS_len(&line) - strlen(kSigPrefix),
                             PKI_BASE64_STD | PKI_BASE64_PAD_REQUIRED, &b64err) ||
          raw_len != 4 + 64) {
        problem = "the signature is not base64 of a key id and an Ed25519 signature";
      } else {
        memcpy(out->key_id, raw, 4);
        memcpy(out->sig, raw + 4, 64);
      }
    }
  }
  if (problem != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a pkid checkpoint: %s", problem);
    return 0;
  }
  return 1;
}

int pki_checkpoint_verify(const pki_checkpoint *cp, EVP_PKEY *pub, pki_err *err) {
  uint8_t id[4];
  if (EVP_PKEY_id(pub) != EVP_PKEY_ED25519) {
    PKI_ERR(err, PKI_ERR_INVALID, "the audit key must be Ed25519");
    return 0;
  }
  if (!pki_checkpoint_key_id(id, pub, err)) return 0;
  if (memcmp(id, cp->key_id, 4) != 0) {
    PKI_ERR(err, PKI_ERR_AUTH, "the checkpoint was signed by another key (id %02x%02x%02x%02x)",
            cp->key_id[0], cp->key_id[1], cp->key_id[2], cp->key_id[3]);
    return 0;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) &&
           EVP_DigestVerify(ctx, cp->sig, sizeof(cp->sig), cp->body, cp->body_len);
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_AUTH, "the checkpoint's signature does not verify: it was altered");
    return 0;
  }
  return 1;
}
